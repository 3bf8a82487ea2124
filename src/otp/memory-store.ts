// The in-memory OtpStore: one process serves every user.
//
// Both maps are kept in expiry order by re-inserting an entry whenever its
// expiry moves (a Map iterates in insertion order). Code lifetime and the
// hourly window are fixed lengths and `now` does not go backwards, so
// insertion order is expiry order, and a sweep walks from the front and stops
// at the first entry still live: its cost is the number it removes. Should
// the wall clock step back, the order is off by that step for a while; that
// only delays a removal, because check() tests expiry itself.
import { CodeHasher, HASH_BYTES, sameHash, type CodeHash } from './code.js';
import { CODE_ACCEPTED, type OtpLimits, type OtpStore, type Reservation, type StoredCode, type SweepResult } from './store.js';

const HOUR_MS = 3_600_000;

export class InMemoryOtpStore implements OtpStore {
  /** address key → live code, in order of expiry */
  private readonly codes = new Map<string, StoredCode>();
  /** address key → times of the sends in the last hour (oldest first), in order of the latest */
  private readonly sends = new Map<string, number[]>();
  /** addresses with a code mail in flight */
  private readonly pending = new Set<string>();
  /** compared against when there is no live code, so that path costs the same */
  private readonly dummy = CodeHasher.dummy();
  private readonly scratch = { a: Buffer.alloc(HASH_BYTES), b: Buffer.alloc(HASH_BYTES) };

  constructor(private readonly limits: OtpLimits) {}

  get size(): number {
    return this.codes.size;
  }

  reserve(key: string, now: number): Reservation {
    const { resendCooldownMs, maxSendsPerHour } = this.limits;
    if (this.pending.has(key)) return { ok: false, reason: 'pending', retryAfterMs: Math.max(1000, resendCooldownMs) };
    const live = this.codes.get(key);
    const liveSince = live === undefined ? 0 : live.expiresAt - this.limits.lifespanMs;
    if (live !== undefined && live.expiresAt > now && now - liveSince < resendCooldownMs) {
      return { ok: false, reason: 'cooldown', retryAfterMs: liveSince + resendCooldownMs - now };
    }
    const times = this.sends.get(key);
    if (times !== undefined) {
      while (times.length > 0 && (times[0] as number) <= now - HOUR_MS) times.shift();
      if (times.length >= maxSendsPerHour) {
        return { ok: false, reason: 'hourly', retryAfterMs: (times[0] as number) + HOUR_MS - now };
      }
      times.push(now);
    }
    // A first send gets an array of exactly one: [] grown by push() reserves
    // 16 slots, ~130 bytes per address, most of a million live codes' memory.
    this.sends.delete(key);
    this.sends.set(key, times ?? [now]);
    this.pending.add(key);
    return { ok: true };
  }

  commit(key: string, hash: CodeHash, now: number): void {
    this.pending.delete(key);
    this.codes.delete(key);
    this.codes.set(key, { hash, expiresAt: now + this.limits.lifespanMs, attemptsLeft: this.limits.maxAttempts });
  }

  release(key: string, refund: boolean): void {
    if (!this.pending.delete(key) || !refund) return;
    const times = this.sends.get(key);
    // Sends of one address never overlap, so its claim is the newest time.
    times?.pop();
    if (times?.length === 0) this.sends.delete(key);
  }

  check(key: string, candidate: CodeHash, now: number): number {
    const entry = this.codes.get(key);
    const live = entry !== undefined && entry.expiresAt > now;
    const match = sameHash(candidate, live ? entry.hash : this.dummy, this.scratch);
    if (!live) {
      if (entry !== undefined) this.codes.delete(key);
      return 0;
    }
    if (match) {
      this.codes.delete(key);
      return CODE_ACCEPTED;
    }
    entry.attemptsLeft -= 1;
    if (entry.attemptsLeft <= 0) this.codes.delete(key);
    return entry.attemptsLeft;
  }

  sweep(now: number, limit = Infinity): SweepResult {
    let removed = 0;
    let examined = 0;
    for (const [key, entry] of this.codes) {
      if (removed >= limit) return { removed, examined };
      examined++;
      if (entry.expiresAt > now) break;
      this.codes.delete(key);
      removed++;
    }
    for (const [key, times] of this.sends) {
      if (removed >= limit) break;
      examined++;
      if ((times[times.length - 1] ?? 0) > now - HOUR_MS || this.pending.has(key)) break;
      this.sends.delete(key);
      removed++;
    }
    return { removed, examined };
  }

  peek(key: string): Readonly<StoredCode> | undefined {
    return this.codes.get(key);
  }
}
