// Idempotency keys in Redis, shared by every replica: a repeat that reaches
// another replica gets the first call's result, and waits for it (polling,
// within its own deadline) while the first send is under way; one mail is
// sent. A claim ends with its result (kept for IDEMPOTENCY_WINDOW_SECONDS
// from the first call) or, when the send failed, is forgotten so that a
// retry really retries. A replica that dies mid-send leaves a claim that
// expires after CLAIM_TTL_MS; a repeat then sends. The live keys are
// counted, everyone's and each caller's, and bounded as in memory
// (IDEMPOTENCY_MAX_BYTES[_PER_CALLER]): a caller cannot fill Redis with
// keys for everyone. Redis unreachable: the call fails ESTORE (UNAVAILABLE)
// and nothing is sent, since without the shared record a retry could not be
// told from a first call.
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'winston';
import { MailroomError, type SmtpReply } from '../errors.js';
import { entryBytes, type IdempotentSends } from '../mail/idempotency.js';
import type { Delivered } from '../mail/job.js';
import { CLAIM_TTL_MS, Script, type RedisLink } from './client.js';
import { IDEM_CLAIM, IDEM_FINISH, IDEM_FORGET } from './idempotency-scripts.js';

const SCRIPTS = { claim: new Script(IDEM_CLAIM), finish: new Script(IDEM_FINISH), forget: new Script(IDEM_FORGET) };

/** what a key counts as against IDEMPOTENCY_MAX_BYTES: as in memory (mail/idempotency.ts), for a key named by its digest */
const KEY_BYTES = entryBytes('x'.repeat(43));
const digest = (s: string): string => createHash('sha256').update(s).digest('base64url');

const FIRST_POLL_MS = 20;
const MAX_POLL_MS = 250;

function parseDelivered(json: unknown): Delivered {
  const d = JSON.parse(String(json)) as { messageId: string; reply: SmtpReply; attempts: number };
  return { messageId: d.messageId, reply: d.reply, attempts: d.attempts };
}

export class RedisIdempotency implements IdempotentSends {
  /** names this replica's claims, so that only the send that claimed a key finishes or forgets it */
  private readonly replica = randomUUID();
  private seq = 0;

  /** keys everyone's and one caller's may hold: IDEMPOTENCY_MAX_BYTES[_PER_CALLER] at what a key is counted as in memory */
  private readonly maxKeys: number;
  private readonly maxKeysOfOwner: number;

  constructor(
    private readonly redis: RedisLink,
    private readonly windowMs: number,
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly limits: { readonly maxBytes: number; readonly maxBytesPerCaller: number },
  ) {
    this.maxKeys = Math.floor(limits.maxBytes / KEY_BYTES);
    this.maxKeysOfOwner = Math.floor(limits.maxBytesPerCaller / KEY_BYTES);
  }

  async remember(scope: string, key: string, fingerprint: string, send: () => Promise<Delivered>, deadline: number, owner = scope): Promise<Delivered> {
    const id = this.redis.key('idem', digest(`${scope}\0${key}`));
    const keys = [id, this.redis.key('idem-owner', digest(owner)), this.redis.key('idem-all')];
    for (let wait = FIRST_POLL_MS; ; wait = Math.min(2 * wait, MAX_POLL_MS)) {
      const claimant = `${this.replica}:${++this.seq}`;
      const now = this.now();
      const [state, result, whose] = (await this.redis.eval('idempotency claim', SCRIPTS.claim, keys, [fingerprint, claimant, now, CLAIM_TTL_MS, this.maxKeys, this.maxKeysOfOwner])) as [string, string | undefined, string | undefined];
      if (state === 'claimed') return this.sendOnce(keys, claimant, send);
      if (state === 'mismatch') throw new MailroomError('EIDEMPOTENCY', 'idempotency_key was already used for a different message');
      if (state === 'done') return parseDelivered(result);
      if (state === 'full') throw this.full(whose === 'mine', Number(result) - now);
      if (Date.now() + wait >= deadline) throw new MailroomError('EDEADLINE', 'deadline passed while the first call with this idempotency_key was still under way');
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Full of live keys: EKEYSFULL, with the wait until the oldest one counted leaves. */
  private full(mine: boolean, waitMs: number): MailroomError {
    const what = mine
      ? `this caller's idempotency keys fill its share, IDEMPOTENCY_MAX_BYTES_PER_CALLER=${this.limits.maxBytesPerCaller}, every one still inside its window`
      : `the idempotency keys fill IDEMPOTENCY_MAX_BYTES=${this.limits.maxBytes}, every one still inside its window`;
    return new MailroomError('EKEYSFULL', what, { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) });
  }

  private async sendOnce(keys: readonly string[], owner: string, send: () => Promise<Delivered>): Promise<Delivered> {
    let delivered: Delivered;
    try {
      delivered = await send();
    } catch (err) {
      await this.redis.eval('idempotency forget', SCRIPTS.forget, keys, [owner]).catch((e: unknown) => {
        this.log.warn('a failed send keeps its idempotency claim until it expires', { reason: (e as Error).message, ttlMs: CLAIM_TTL_MS });
      });
      throw err;
    }
    // The mail went out: the result must reach the key, or a repeat after the claim expires would send it again.
    await this.redis.eval('idempotency finish', SCRIPTS.finish, keys, [owner, JSON.stringify(delivered), this.windowMs]).catch((e: unknown) => {
      this.log.error('a sent mail\'s idempotency record was not stored; a repeat after its claim expires would send it again', { reason: (e as Error).message, ttlMs: CLAIM_TTL_MS });
    });
    return delivered;
  }
}
