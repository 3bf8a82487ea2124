// The OTP service's rate caps: per caller (OTP_MAX_SENDS_PER_MINUTE,
// OTP_MAX_CHECKS_PER_SECOND), and per caller-given rate key when configured
// (OTP_MAX_SENDS_PER_KEY_PER_HOUR, OTP_MAX_CHECKS_PER_KEY_PER_MINUTE). They
// protect the service and the relay account; what bounds guessing a code is
// the per-address limits (attempts per code, sends per address), see the
// README's OTP page.
import type * as grpc from '@grpc/grpc-js';
import { RateCap, rateIdentity, rateKeyOf } from './rate-cap.js';

export interface OtpRateLimits {
  /** 0: no cap, for each of them */
  readonly maxSendsPerMinute: number;
  readonly maxChecksPerSecond: number;
  readonly maxSendsPerKeyPerHour: number;
  readonly maxChecksPerKeyPerMinute: number;
}

type Call = { readonly metadata: grpc.Metadata; getPeer(): string };

export class OtpCaps {
  private readonly sends: RateCap;
  private readonly checks: RateCap;
  private readonly keySends: RateCap;
  private readonly keyChecks: RateCap;

  constructor(limits: OtpRateLimits, now: () => number = Date.now) {
    this.sends = new RateCap(limits.maxSendsPerMinute, 60_000, 'codes sent this minute by this caller (OTP_MAX_SENDS_PER_MINUTE)', now);
    this.checks = new RateCap(limits.maxChecksPerSecond, 1000, 'code checks this second by this caller (OTP_MAX_CHECKS_PER_SECOND)', now);
    this.keySends = new RateCap(limits.maxSendsPerKeyPerHour, 3_600_000, 'codes sent this hour for this rate key (OTP_MAX_SENDS_PER_KEY_PER_HOUR)', now);
    this.keyChecks = new RateCap(limits.maxChecksPerKeyPerMinute, 60_000, 'code checks this minute for this rate key (OTP_MAX_CHECKS_PER_KEY_PER_MINUTE)', now);
  }

  /** A SendCode may go on, or this throws why not (EINVALID for a bad rate key, ERATELIMIT). */
  send(call: Call): void {
    this.take(call, this.keySends, this.sends);
  }

  /** A ValidateCode may go on, or this throws why not. */
  check(call: Call): void {
    this.take(call, this.keyChecks, this.checks);
  }

  private take(call: Call, perKey: RateCap, perCaller: RateCap): void {
    const identity = rateIdentity(call);
    const key = rateKeyOf(call.metadata);
    // A caller's keys are its own: another caller naming the same key spends nothing of it.
    if (key !== undefined) perKey.take(`${identity}\n${key}`);
    perCaller.take(identity);
  }
}
