// Remembers the outcome of SendMail calls that carried an idempotency key.
// A repeat inside the window gets the first result (or waits for it while it
// is in flight); a failed send is forgotten so that a retry really retries.
//
// Bounded in bytes, and honest about it: a key is never forgotten inside its
// window, because a retry could still come and would send a second mail.
// When the cache is full of live keys a new key is refused (EKEYSFULL,
// RESOURCE_EXHAUSTED with the wait until the oldest key expires) instead.
// Entries are kept in insertion order, which is expiry order, so pruning
// touches only what expires.
import { MailroomError } from '../errors.js';
import type { Delivered } from './job.js';

interface Entry {
  /** whose share of IDEMPOTENCY_MAX_BYTES it spends */
  readonly owner: string;
  readonly fingerprint: string;
  readonly expiresAt: number;
  readonly bytes: number;
  readonly result: Promise<Delivered>;
}

/**
 * What one key costs in memory: the Map entry, the entry and its promise,
 * the result (a Message-ID and the relay's reply), the fingerprint, and the
 * key itself, two bytes a character at most (measured: docs/decisions.md).
 */
export function entryBytes(key: string): number {
  return 950 + 2 * key.length;
}

/**
 * Where idempotency keys are remembered: this process (IdempotencyCache) or
 * Redis, shared by replicas (redis/idempotency.ts). `remember` gives the
 * first call's result for (scope, key), waiting for it while it is under way
 * (until `deadline`), or runs `send` and remembers its result; the same key
 * with another fingerprint is EIDEMPOTENCY; a failed send is forgotten.
 */
export interface IdempotentSends {
  /** `owner`: whose share of a bounded store the key spends (default: the scope) */
  remember(scope: string, key: string, fingerprint: string, send: () => Promise<Delivered>, deadline: number, owner?: string): Promise<Delivered>;
}

export class IdempotencyCache implements IdempotentSends {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** bytes by owner (IDEMPOTENCY_MAX_BYTES_PER_CALLER) */
  private readonly owners = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxBytes: number,
    private readonly now: () => number = Date.now,
    /** what one owner's keys may take of maxBytes */
    private readonly maxBytesPerOwner = maxBytes,
  ) {}

  /**
   * Returns the remembered result for key, or runs `send` and remembers it.
   * `scope` keeps callers apart: the same key from two callers is two keys.
   */
  run(key: string, fingerprint: string, send: () => Promise<Delivered>, scope = '', owner = scope): { result: Promise<Delivered>; first: boolean } {
    this.prune();
    const id = scope === '' ? key : `${scope}\u0000${key}`;
    const existing = this.entries.get(id);
    if (existing !== undefined) {
      if (existing.fingerprint !== fingerprint) {
        throw new MailroomError('EIDEMPOTENCY', 'idempotency_key was already used for a different message');
      }
      return { result: existing.result, first: false };
    }
    const bytes = entryBytes(id);
    if (this.bytes + bytes > this.maxBytes) {
      throw new MailroomError('EKEYSFULL', `the idempotency keys fill IDEMPOTENCY_MAX_BYTES=${this.maxBytes}, every one still inside its window`, {
        retryAfterSeconds: this.waitSeconds(() => true),
      });
    }
    const mine = this.owners.get(owner) ?? 0;
    if (mine + bytes > this.maxBytesPerOwner) {
      throw new MailroomError('EKEYSFULL', `this caller's idempotency keys fill its share, IDEMPOTENCY_MAX_BYTES_PER_CALLER=${this.maxBytesPerOwner}, every one still inside its window`, {
        retryAfterSeconds: this.waitSeconds((e) => e.owner === owner),
      });
    }
    const result = send();
    const entry: Entry = { owner, fingerprint, expiresAt: this.now() + this.windowMs, bytes, result };
    this.entries.set(id, entry);
    this.bytes += bytes;
    this.owners.set(owner, mine + bytes);
    result.catch(() => {
      if (this.entries.get(id) === entry) this.forget(id, entry);
    });
    return { result, first: true };
  }

  remember(scope: string, key: string, fingerprint: string, send: () => Promise<Delivered>, _deadline?: number, owner?: string): Promise<Delivered> {
    try {
      return this.run(key, fingerprint, send, scope, owner ?? scope).result;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Seconds until the oldest entry `which` names leaves its window (entries are in expiry order). */
  private waitSeconds(which: (entry: Entry) => boolean): number {
    for (const entry of this.entries.values()) if (which(entry)) return Math.max(1, Math.ceil((entry.expiresAt - this.now()) / 1000));
    return 1;
  }

  private forget(id: string, entry: Entry): void {
    this.entries.delete(id);
    this.bytes -= entry.bytes;
    const left = (this.owners.get(entry.owner) ?? 0) - entry.bytes;
    if (left <= 0) this.owners.delete(entry.owner);
    else this.owners.set(entry.owner, left);
  }

  private prune(): void {
    const now = this.now();
    for (const [id, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.forget(id, entry);
    }
  }
}
