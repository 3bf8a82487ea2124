// Rate caps kept per key (a caller, a caller's rate key), never one bucket
// for everyone: a key that spends its allowance is refused alone.
//
// Tables of buckets are bounded: a bucket that has refilled is the same as
// none and is forgotten, and past `maxKeys` the least recently used goes.
// That errs towards letting a request through, never towards locking an
// honest caller out because others filled the table.
import { MailroomError } from '../errors.js';

/** buckets one cap keeps at most (a few dozen bytes each) */
export const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  last: number;
}

/** `limit` per `windowMs` for each key, bursts up to a window's worth; 0: no cap. */
export class RateCap {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    /** names the cap in a refusal (its variable), never the key */
    private readonly what: string,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = MAX_BUCKETS,
  ) {
    this.perMs = limit / windowMs;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Throws ERATELIMIT (RESOURCE_EXHAUSTED with retry-after) when `key` is over the cap. */
  take(key: string): void {
    if (this.limit === 0) return;
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      this.makeRoom(now);
      bucket = { tokens: this.limit, last: now };
    } else {
      // Re-inserted: the map's order is least recently used first.
      this.buckets.delete(key);
      this.refill(bucket, now);
    }
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const waitMs = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs));
    throw new MailroomError('ERATELIMIT', `too many ${this.what}`, { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) });
  }

  private refill(bucket: Bucket, now: number): void {
    bucket.tokens = Math.min(this.limit, bucket.tokens + (now - bucket.last) * this.perMs);
    bucket.last = now;
  }

  /** Forgets the refilled buckets among the least recently used, and the least recently used one when the table is full. */
  private makeRoom(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.last) * this.perMs < this.limit) break;
      this.buckets.delete(key);
    }
    if (this.buckets.size < this.maxKeys) return;
    const oldest = this.buckets.keys().next();
    if (oldest.done !== true) this.buckets.delete(oldest.value);
  }
}

/** A cap kept elsewhere (Redis): resolves when the key may go on, rejects ERATELIMIT. */
export interface SharedCap {
  take(key: string): Promise<void>;
}

/** Makes a shared cap of `limit` per `windowMs` named `name`. */
export type SharedCaps = (name: string, limit: number, windowMs: number, what: string) => SharedCap;
