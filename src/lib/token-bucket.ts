/**
 * At most `limit` events per `windowMs`, with bursts up to a whole window's
 * worth: the pool's messages per second (SEND_RATE_LIMIT_PER_SECOND, as
 * providers' own limits allow a quiet sender a short burst), and the OTP
 * service's sends per minute and checks per second.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly capacity: number;
  private readonly perMs: number;

  constructor(limit: number, windowMs: number, now: number) {
    this.capacity = Math.max(1, limit);
    this.perMs = limit / windowMs;
    this.tokens = this.capacity;
    this.last = now;
  }

  /** Takes a token and returns 0, or returns the ms until one is available. */
  take(now: number): number {
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.tokens) / this.perMs));
  }
}
