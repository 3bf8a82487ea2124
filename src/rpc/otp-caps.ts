// The OTP service's rate caps: per caller (OTP_MAX_SENDS_PER_MINUTE,
// OTP_MAX_CHECKS_PER_SECOND), and per caller-given rate key when configured
// (OTP_MAX_SENDS_PER_KEY_PER_HOUR, OTP_MAX_CHECKS_PER_KEY_PER_MINUTE). They
// protect the service and the relay account; what bounds guessing a code is
// the per-address limits (attempts per code, sends per address), see the
// README's OTP page. With REDIS_URL the per-key caps are kept in Redis, one
// allowance for every replica (redis/rate-cap.ts); the per-caller caps stay
// each replica's own (they protect the replica).
import type * as grpc from '@grpc/grpc-js';
import { RateCap, type SharedCap, type SharedCaps } from '../lib/rate-cap.js';
import { rateIdentity, rateKeyOf } from './rate-cap.js';

export interface OtpRateLimits {
  /** 0: no cap, for each of them */
  readonly maxSendsPerMinute: number;
  readonly maxChecksPerSecond: number;
  readonly maxSendsPerKeyPerHour: number;
  readonly maxChecksPerKeyPerMinute: number;
}

type Call = { readonly metadata: grpc.Metadata; getPeer(): string };

type KeyCap = { readonly local: RateCap } | { readonly shared: SharedCap };

export class OtpCaps {
  private readonly sends: RateCap;
  private readonly checks: RateCap;
  private readonly keySends: KeyCap;
  private readonly keyChecks: KeyCap;

  constructor(limits: OtpRateLimits, now: () => number = Date.now, shared?: SharedCaps) {
    this.sends = new RateCap(limits.maxSendsPerMinute, 60_000, 'codes sent this minute by this caller (OTP_MAX_SENDS_PER_MINUTE)', now);
    this.checks = new RateCap(limits.maxChecksPerSecond, 1000, 'code checks this second by this caller (OTP_MAX_CHECKS_PER_SECOND)', now);
    const keyCap = (name: string, limit: number, windowMs: number, what: string): KeyCap =>
      shared !== undefined && limit > 0 ? { shared: shared(name, limit, windowMs, what) } : { local: new RateCap(limit, windowMs, what, now) };
    this.keySends = keyCap('sends', limits.maxSendsPerKeyPerHour, 3_600_000, 'codes sent this hour for this rate key (OTP_MAX_SENDS_PER_KEY_PER_HOUR)');
    this.keyChecks = keyCap('checks', limits.maxChecksPerKeyPerMinute, 60_000, 'code checks this minute for this rate key (OTP_MAX_CHECKS_PER_KEY_PER_MINUTE)');
  }

  /**
   * A SendCode may go on, or this throws why not (EINVALID for a bad rate
   * key, ERATELIMIT); a promise of the same when its rate key's cap is
   * shared.
   */
  send(call: Call): Promise<void> | undefined {
    return this.take(call, this.keySends, this.sends);
  }

  /** A ValidateCode may go on, or this throws why not (or a promise, as for send). */
  check(call: Call): Promise<void> | undefined {
    return this.take(call, this.keyChecks, this.checks);
  }

  private take(call: Call, perKey: KeyCap, perCaller: RateCap): Promise<void> | undefined {
    const identity = rateIdentity(call);
    const key = rateKeyOf(call.metadata);
    // The caller's own cap first: a caller over it spends nothing of its keys' shared allowance.
    perCaller.take(identity);
    if (key === undefined) return undefined;
    // A caller's keys are its own: another caller naming the same key spends nothing of it.
    const id = `${identity}\n${key}`;
    if ('local' in perKey) {
      perKey.local.take(id);
      return undefined;
    }
    return perKey.shared.take(id);
  }
}
