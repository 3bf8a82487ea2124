// Rate caps kept per caller, never one bucket for everyone: a caller that
// spends its allowance (a flood of bogus checks, a runaway client) is
// refused alone. Who a caller is: its token's name or certificate subject,
// else the address it calls from (an IPv6 address by its /64, which one
// host holds whole). A caller may also name the person behind a request
// (`mailroom-rate-key` metadata, an end user's IP say), which then has a
// bucket of its own inside the caller's.
//
// Tables of buckets are bounded: a bucket that has refilled is the same as
// none and is forgotten, and past `maxKeys` the least recently used goes.
// That errs towards letting a request through, never towards locking an
// honest caller out because others filled the table.
import type * as grpc from '@grpc/grpc-js';
import { MailroomError } from '../errors.js';
import { callerOf } from './auth.js';
import { addressKey, peerAddress } from './peer.js';

export const RATE_KEY = 'mailroom-rate-key';
const MAX_RATE_KEY_CHARS = 256;
const RATE_KEY_SHAPE = /^[\x20-\x7e]+$/;
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

/** Who a call's rate caps belong to: its authenticated caller, else the address it came from. */
export function rateIdentity(call: { readonly metadata: grpc.Metadata; getPeer(): string }): string {
  const caller = callerOf(call.metadata);
  return caller !== '' ? `caller ${caller}` : `address ${addressKey(peerAddress(call.getPeer()))}`;
}

/** The caller's own rate key, when it sent one; INVALID_ARGUMENT when it is not one (its value is never repeated). */
export function rateKeyOf(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get(RATE_KEY);
  if (values.length === 0) return undefined;
  const value = values[0];
  if (values.length > 1 || typeof value !== 'string' || value.length > MAX_RATE_KEY_CHARS || !RATE_KEY_SHAPE.test(value)) {
    throw new MailroomError('EINVALID', `${RATE_KEY}: one value of 1 to ${MAX_RATE_KEY_CHARS} printable ASCII characters`);
  }
  return value;
}
