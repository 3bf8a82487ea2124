// The Redis connection of a replica (ioredis: one client library for the
// codes, the idempotency keys, the outbox and BullMQ, with Sentinel
// failover), with the scripts it runs. It never queues a command while
// disconnected and gives every command a deadline: a call that needs Redis
// fails at once (ESTORE, UNAVAILABLE) rather than waiting on an outage or
// answering from a stale view. It reconnects by itself with a jittered
// backoff, after a restart, a cut connection or a failover (asking the
// sentinels where the primary is now), and says when it is up.
//
// A Redis that hangs (stopped, swapping, a full disk) keeps its socket open
// and says nothing: a PING under the command deadline, every half of it at
// most, and any command that timed out, say it is down all the same. A
// Redis that comes back empty (restarted without persistence, or a replica
// promoted before it had our data) is told by a marker key it no longer
// holds: onReset's listeners hear of it, once per loss.
import { createHash, randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { Listeners } from '../lib/listeners.js';

/**
 * How long a claim (an OTP send or an idempotent SendMail under way) holds
 * its key when the replica that made it never finishes it (it died
 * mid-send): the key is free again after this long.
 */
export const CLAIM_TTL_MS = 600_000;

export interface RedisSettings {
  /** redis://, rediss:// or the path of a unix socket; undefined with sentinels */
  readonly url: string | undefined;
  /** REDIS_SENTINELS: where to ask for the primary of `sentinelName` */
  readonly sentinels: readonly { readonly host: string; readonly port: number }[] | undefined;
  readonly sentinelName: string;
  /** every key starts with it */
  readonly prefix: string;
  /** a command without an answer this long fails */
  readonly commandTimeoutMs: number;
  /** OUTBOX_REDIS_MIN_REPLICAS: replicas a write must reach (WAIT) before it is acknowledged */
  readonly minReplicas: number;
}

/** A Lua script run by its SHA1, loaded again when Redis has forgotten it (a restart, a failover). */
export class Script {
  readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}

/** how often the link PINGs at most: within REDIS_TIMEOUT_MS + this, a hang is seen */
const PROBE_MAX_MS = 500;
/** the marker outlives any outage a replica rides out; each probe renews it */
const MARKER_TTL_MS = 7 * 86_400_000;
/** reconnection waits: from 50 ms, doubling, at most this, with jitter */
const RECONNECT_MAX_MS = 2000;

function isTimeout(err: unknown): boolean {
  return err instanceof Error && /timed out/i.test(err.message);
}

export class RedisLink {
  readonly client: Redis;
  private up = false;
  private probe: NodeJS.Timeout | undefined;
  private probing = false;
  private lastComplaint = 0;
  /** the marker this replica saw (or set) in Redis; undefined before the first check */
  private marker: string | undefined;
  private readonly health = new Listeners<boolean>();
  private readonly resets = new Listeners<void>();

  constructor(
    readonly settings: RedisSettings,
    private readonly log: Logger,
  ) {
    this.client = new Redis(this.options({ lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 }));
    this.client.on('ready', () => void this.checkMarker());
    this.client.on('close', () => this.set(false));
    this.client.on('reconnecting', () => this.set(false));
    this.client.on('error', (err: Error) => {
      this.set(false);
      // Once per ten seconds: a Redis that is down must not flood the log.
      const now = Date.now();
      if (now - this.lastComplaint < 10_000) return;
      this.lastComplaint = now;
      this.log.warn('Redis unreachable; OTP calls and the Redis outbox fail until it is back', { reason: err.message });
    });
  }

  /** The options of every connection to this Redis (BullMQ's too), with `extra`. */
  options(extra: RedisOptions = {}): RedisOptions {
    const { url, sentinels, sentinelName, commandTimeoutMs } = this.settings;
    const where: RedisOptions =
      sentinels !== undefined
        ? { sentinels: sentinels.map((s) => ({ host: s.host, port: s.port })), name: sentinelName, sentinelRetryStrategy: (n: number) => backoff(n) }
        : url?.startsWith('/') === true
          ? { path: url }
          : {};
    const fromUrl = url !== undefined && !url.startsWith('/') && sentinels === undefined ? parseUrl(url) : {};
    return {
      ...fromUrl,
      ...where,
      connectionName: 'mailroom',
      connectTimeout: commandTimeoutMs,
      commandTimeout: commandTimeoutMs,
      retryStrategy: (n: number) => backoff(n),
      // A primary that a failover made a replica answers writes READONLY: ask the sentinels again.
      reconnectOnError: (err: Error) => err.message.startsWith('READONLY'),
      ...extra,
    };
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
      const stop = this.health.add((up) => {
        if (!up) return;
        stop();
        resolve();
      });
    });
  }

  /** Hears every change of up/down, and the state now. */
  onHealth(listener: (up: boolean) => void): () => void {
    listener(this.up);
    return this.health.add(listener);
  }

  /** Hears that Redis came back without what it held (the marker is gone). */
  onReset(listener: () => void): () => void {
    return this.resets.add(listener);
  }

  /** Starts connecting; resolves at once, whether Redis answers or not (it keeps trying). */
  start(): void {
    this.client.connect().catch((err: unknown) => this.log.warn('Redis connect failed; retrying', { reason: (err as Error).message }));
    this.probe = setInterval(() => this.ping(), Math.min(PROBE_MAX_MS, Math.max(10, this.settings.commandTimeoutMs / 2)));
    this.probe.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.probe);
    await this.client.quit().catch(() => this.client.disconnect());
  }

  /** Runs `command`, turning any failure into ESTORE; a deadline missed says Redis is down until it answers again. */
  async run<T>(what: string, command: (client: Redis) => Promise<T>): Promise<T> {
    try {
      return await command(this.client);
    } catch (err) {
      if (isTimeout(err)) this.set(false);
      throw new MailroomError('ESTORE', `Redis ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Waits until OUTBOX_REDIS_MIN_REPLICAS replicas hold every write this
   * connection made (WAIT), within half the command deadline; fewer is an
   * ESTORE: what was written may survive a failover, or not.
   */
  async replicated(what: string, advice = ''): Promise<void> {
    const n = this.settings.minReplicas;
    if (n <= 0) return;
    const within = Math.max(1, Math.floor(this.settings.commandTimeoutMs / 2));
    const acked = await this.run('WAIT', (c) => c.wait(n, within));
    if (acked < n) throw new MailroomError('ESTORE', `${what} reached ${acked} of the ${n} Redis replicas required (OUTBOX_REDIS_MIN_REPLICAS) within ${within} ms${advice}`);
  }

  /** Runs `script` on `keys` with `args` (by SHA1; sent whole once when Redis does not know it). */
  eval(what: string, script: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.run(what, (c) => evalScript(c, script, keys, args));
  }

  private ping(): void {
    if (this.probing || this.client.status !== 'ready') return;
    this.probing = true;
    this.client.ping().then(
      () => {
        this.probing = false;
        if (this.client.status === 'ready') this.set(true);
      },
      () => {
        this.probing = false;
        this.set(false);
      },
    );
  }

  /**
   * On every (re)connection: is the marker this replica saw still there? A
   * Redis that lost it lost everything else of ours too. Up only once that
   * is known.
   */
  private async checkMarker(): Promise<void> {
    const key = this.key('epoch');
    try {
      const seen = await this.client.get(key);
      if (seen === null) {
        // A new marker each time: another replica that comes back later sees it differ from its own, and tells it too.
        await this.client.set(key, randomUUID(), 'PX', MARKER_TTL_MS, 'NX');
        if (this.marker !== undefined) this.lost();
        this.marker = (await this.client.get(key)) ?? undefined;
      } else {
        if (this.marker !== undefined && seen !== this.marker) this.lost();
        this.marker = seen;
        await this.client.pexpire(key, MARKER_TTL_MS);
      }
      this.set(true);
    } catch {
      // The connection went again; the next 'ready' checks once more.
    }
  }

  private lost(): void {
    this.log.error('Redis came back without its data (restarted without persistence, or a failover to a replica that had not caught up): codes and queued messages it held are gone; run it with appendonly yes and appendfsync always (docs/replicas.md)', {
      prefix: this.settings.prefix,
    });
    this.resets.tell();
  }

  private set(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    if (up) this.log.info('Redis ready', { prefix: this.settings.prefix });
    this.health.tell(up);
  }
}

/** Reconnection waits: 50 ms doubling to RECONNECT_MAX_MS, half fixed and half random. */
function backoff(attempt: number): number {
  const exp = Math.min(RECONNECT_MAX_MS, 50 * 2 ** Math.min(attempt, 10));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

/** redis://user:pass@host:port/db and rediss:// (TLS) as ioredis options. */
function parseUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname,
    port: u.port === '' ? 6379 : Number(u.port),
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export async function evalScript(client: Redis, script: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
  try {
    return await client.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return client.eval(script.lua, keys.length, ...keys, ...args);
  }
}
