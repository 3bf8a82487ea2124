// A cap on how often the whole service does something (OTP sends, checks),
// kept per caller: one caller's burst does not spend another's allowance.
// Callers are the few names the operator configures, so their buckets are
// kept for good.
import { MailroomError } from '../errors.js';
import { TokenBucket } from '../mail/token-bucket.js';

export class RateCap {
  private readonly buckets = new Map<string, TokenBucket>();

  /** `limit` per `windowMs`; 0: no cap. `what` names it in the refusal. */
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws ERATELIMIT (RESOURCE_EXHAUSTED with retry-after) when `caller` is over the cap. */
  take(caller: string): void {
    if (this.limit === 0) return;
    const now = this.now();
    let bucket = this.buckets.get(caller);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.limit, this.windowMs, now);
      this.buckets.set(caller, bucket);
    }
    const waitMs = bucket.take(now);
    if (waitMs > 0) throw new MailroomError('ERATELIMIT', `too many ${this.what}`, { retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) });
  }
}
