// The one Redis connection of a replica (node-redis), with the scripts it
// runs. It never queues a command while disconnected and gives every
// command a deadline: a call that needs Redis fails at once (ESTORE,
// UNAVAILABLE) rather than waiting on an outage or answering from a stale
// view. It reconnects by itself, with backoff, and says when it is up.
// A Redis that hangs (stopped, swapping, a full disk) keeps its socket open
// and says nothing: a PING under the command deadline, every half of it at
// most, and any command that timed out, say it is down all the same.
import { createClient, defineScript, TimeoutError, TimeoutReadError, type RedisClientType } from 'redis';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { CHECK, COMMIT, RELEASE, RESERVE } from './otp-scripts.js';
import { IDEM_CLAIM, IDEM_FINISH, IDEM_FORGET } from './idempotency-scripts.js';
import { OUTBOX_CREATE, OUTBOX_DUE, OUTBOX_MOVE } from './outbox-scripts.js';

/**
 * How long a claim (an OTP send or an idempotent SendMail under way) holds
 * its key when the replica that made it never finishes it (it died
 * mid-send): the key is free again after this long.
 */
export const CLAIM_TTL_MS = 600_000;

export interface RedisSettings {
  /** redis://, rediss:// or the path of a unix socket */
  readonly url: string;
  /** every key starts with it */
  readonly prefix: string;
  /** a command without an answer this long fails */
  readonly commandTimeoutMs: number;
}

interface Parser {
  pushKey(key: string): void;
  push(...args: string[]): void;
}

const asNumber = (reply: unknown): number => Number(reply);
const asArray = (reply: unknown): unknown[] => (Array.isArray(reply) ? reply : []);

/** A script of one key whose arguments are strings. */
function oneKey<R>(script: string, transformReply: (reply: unknown) => R) {
  return defineScript({
    SCRIPT: script,
    NUMBER_OF_KEYS: 1,
    parseCommand(parser: Parser, key: string, ...args: string[]) {
      parser.pushKey(key);
      parser.push(...args);
    },
    transformReply,
  });
}

/** A script of `keys` keys whose arguments are strings: called with the keys, then the arguments. */
function keysThenArgs<R>(script: string, keys: number, transformReply: (reply: unknown) => R) {
  return defineScript({
    SCRIPT: script,
    NUMBER_OF_KEYS: keys,
    parseCommand(parser: Parser, keyNames: readonly string[], ...args: string[]) {
      for (const key of keyNames) parser.pushKey(key);
      parser.push(...args);
    },
    transformReply,
  });
}

const asReply = (reply: unknown): unknown => reply;

const SCRIPTS = {
  outboxCreate: keysThenArgs(OUTBOX_CREATE, 8, String),
  outboxMove: keysThenArgs(OUTBOX_MOVE, 8, asReply),
  outboxDue: keysThenArgs(OUTBOX_DUE, 1, asNumber),
  otpReserve: oneKey(RESERVE, asArray),
  otpCommit: oneKey(COMMIT, asNumber),
  otpRelease: oneKey(RELEASE, asNumber),
  otpCheck: oneKey(CHECK, asNumber),
  idemClaim: oneKey(IDEM_CLAIM, asArray),
  idemFinish: oneKey(IDEM_FINISH, asNumber),
  idemForget: oneKey(IDEM_FORGET, asNumber),
};

export type Redis = RedisClientType<{}, {}, typeof SCRIPTS>;

/** how often the link PINGs at most: within REDIS_TIMEOUT_MS + this, a hang is seen */
const PROBE_MAX_MS = 500;

export class RedisLink {
  readonly client: Redis;
  private up = false;
  private probe: NodeJS.Timeout | undefined;
  private probing = false;
  private lastComplaint = 0;
  private readonly listeners: ((up: boolean) => void)[] = [];

  constructor(
    readonly settings: RedisSettings,
    private readonly log: Logger,
  ) {
    const where = settings.url.startsWith('/') ? { socket: { path: settings.url } } : { url: settings.url };
    this.client = createClient({
      ...where,
      name: 'mailroom',
      scripts: SCRIPTS,
      disableOfflineQueue: true,
      commandOptions: { timeout: settings.commandTimeoutMs, rejectInFlight: true },
      socket: {
        ...('socket' in where ? where.socket : {}),
        connectTimeout: settings.commandTimeoutMs,
        reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
      },
    }) as Redis;
    this.client.on('ready', () => this.set(true));
    this.client.on('end', () => this.set(false));
    this.client.on('reconnecting', () => this.set(false));
    this.client.on('error', (err: Error) => {
      this.set(false);
      // Once per ten seconds: a Redis that is down must not flood the log.
      const now = Date.now();
      if (now - this.lastComplaint < 10_000) return;
      this.lastComplaint = now;
      this.log.warn('Redis unreachable; OTP calls fail until it is back', { reason: err.message });
    });
  }

  get ready(): boolean {
    return this.up;
  }

  key(...parts: string[]): string {
    return `${this.settings.prefix}${parts.join(':')}`;
  }

  /** Resolves once Redis has answered (at once when it has). */
  ready$(): Promise<void> {
    if (this.up) return Promise.resolve();
    return new Promise((resolve) => {
      const listener = (up: boolean): void => {
        if (!up) return;
        this.listeners.splice(this.listeners.indexOf(listener), 1);
        resolve();
      };
      this.listeners.push(listener);
    });
  }

  /** Hears every change of up/down, and the state now. */
  onHealth(listener: (up: boolean) => void): () => void {
    this.listeners.push(listener);
    listener(this.up);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Starts connecting; resolves at once, whether Redis answers or not (it keeps trying). */
  start(): void {
    this.client.connect().catch((err: unknown) => this.log.warn('Redis connect failed; retrying', { reason: (err as Error).message }));
    this.probe = setInterval(() => this.ping(), Math.min(PROBE_MAX_MS, Math.max(10, this.settings.commandTimeoutMs / 2)));
    this.probe.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    if (!this.client.isOpen) return;
    await this.client.close().catch(() => this.client.destroy());
  }

  /** Runs `command`, turning any failure into ESTORE; a deadline missed says Redis is down until it answers again. */
  async run<T>(what: string, command: (client: Redis) => Promise<T>): Promise<T> {
    try {
      return await command(this.client);
    } catch (err) {
      if (err instanceof TimeoutError || err instanceof TimeoutReadError) this.set(false);
      throw new MailroomError('ESTORE', `Redis ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  private ping(): void {
    if (this.probing || !this.client.isReady) return;
    this.probing = true;
    this.client.ping().then(
      () => {
        this.probing = false;
        if (this.client.isReady) this.set(true);
      },
      () => {
        this.probing = false;
        this.set(false);
      },
    );
  }

  private set(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    if (up) this.log.info('Redis ready', { prefix: this.settings.prefix });
    for (const listener of [...this.listeners]) listener(up);
  }
}
