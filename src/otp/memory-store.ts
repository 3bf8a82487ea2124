// The in-memory OtpStore: one process serves every user. The OTP rules
// (cooldown, hourly budget, attempts, expiry, single use) over the slots of
// slot-table.ts.
//
// Order. A code expires `lifespanMs` after its commit, the hourly send
// history an hour after its newest send: two orders, so each slot sits on two
// lists (CODES in commit order, SENDS in order of the newest send). Both
// lengths are fixed and `now` does not go backwards, so list order is expiry
// order, and a sweep walks each list from the front and stops at the first
// entry still live: its cost is the number it removes. Should the wall clock
// step back, the order is off by that step for a while; that only delays a
// removal, because check() and reserve() test time themselves.
//
// A slot lives while it has a code, a send in the hour or a mail in flight,
// and then goes back to the free list for reuse.
import { CodeHasher, HASH_BYTES, sameHashAt, type CodeHash } from './code.js';
import { CODES, IN_PAGE, NONE, SENDS, SlotTable } from './slot-table.js';
import { CODE_ACCEPTED, type OtpLimits, type OtpStore, type Reservation, type StoredCode, type SweepResult } from './store.js';

const HOUR_MS = 3_600_000;

/** flags: the slot has a code (is on CODES), a send in the hour (is on SENDS), a mail in flight */
const HAS_CODE = 1;
const HAS_SENDS = 2;
const PENDING = 4;

export class InMemoryOtpStore implements OtpStore {
  private readonly table = new SlotTable();
  /** codes stored: live or not yet swept */
  private live = 0;
  /**
   * Slots with more than one send in the hour → the older ones, oldest first
   * (the newest is the slot's lastSend). Most addresses get one code an
   * hour: they pay nothing here.
   */
  private readonly olderSends = new Map<number, number[]>();

  /** compared against when there is no live code, so that path costs the same */
  private readonly dummy = Buffer.from(CodeHasher.dummy(), 'latin1');
  private readonly scratch = { a: Buffer.alloc(HASH_BYTES), b: Buffer.alloc(HASH_BYTES) };

  constructor(private readonly limits: OtpLimits) {
    if (limits.maxAttempts > 255) throw new RangeError('maxAttempts above 255 does not fit the store');
  }

  get size(): number {
    return this.live;
  }

  reserve(key: string, now: number): Reservation {
    const { resendCooldownMs, maxSendsPerHour, lifespanMs } = this.limits;
    const shard = this.table.shard(key);
    let slot = shard.get(key);
    let inHour = 0;
    if (slot !== undefined) {
      const page = this.table.page(slot);
      const i = slot & IN_PAGE;
      const flags = page.flags[i] as number;
      if ((flags & PENDING) !== 0) return { ok: false, reason: 'pending', retryAfterMs: Math.max(1000, resendCooldownMs) };
      const expiresAt = page.expiresAt[i] as number;
      const liveSince = expiresAt - lifespanMs;
      if ((flags & HAS_CODE) !== 0 && expiresAt > now && now - liveSince < resendCooldownMs) {
        return { ok: false, reason: 'cooldown', retryAfterMs: liveSince + resendCooldownMs - now };
      }
      if ((flags & HAS_SENDS) !== 0) {
        inHour = this.sendsInHour(slot, now);
        if (inHour >= maxSendsPerHour) {
          const oldest = this.olderSends.get(slot)?.[0] ?? (page.lastSend[i] as number);
          return { ok: false, reason: 'hourly', retryAfterMs: oldest + HOUR_MS - now };
        }
      }
    } else {
      slot = this.table.allocate(key, shard);
    }
    const page = this.table.page(slot);
    const i = slot & IN_PAGE;
    if (inHour > 0) {
      const older = this.olderSends.get(slot);
      if (older === undefined) this.olderSends.set(slot, [page.lastSend[i] as number]);
      else older.push(page.lastSend[i] as number);
    }
    page.lastSend[i] = now;
    if (((page.flags[i] as number) & HAS_SENDS) !== 0) this.table.unlink(SENDS, slot);
    this.table.append(SENDS, slot);
    page.flags[i]! |= HAS_SENDS | PENDING;
    return { ok: true };
  }

  commit(key: string, hash: CodeHash, now: number): void {
    const shard = this.table.shard(key);
    const slot = shard.get(key) ?? this.table.allocate(key, shard);
    const page = this.table.page(slot);
    const i = slot & IN_PAGE;
    page.flags[i] = (page.flags[i] as number) & ~PENDING;
    page.hashes.write(hash, i * HASH_BYTES, HASH_BYTES, 'latin1');
    page.expiresAt[i] = now + this.limits.lifespanMs;
    page.attempts[i] = this.limits.maxAttempts;
    if (((page.flags[i] as number) & HAS_CODE) !== 0) this.table.unlink(CODES, slot);
    else this.live++;
    this.table.append(CODES, slot);
    page.flags[i]! |= HAS_CODE;
  }

  release(key: string, refund: boolean): void {
    const slot = this.table.shard(key).get(key);
    if (slot === undefined) return;
    const page = this.table.page(slot);
    const i = slot & IN_PAGE;
    if (((page.flags[i] as number) & PENDING) === 0) return;
    page.flags[i] = (page.flags[i] as number) & ~PENDING;
    if (refund) {
      // Sends of one address never overlap, so its claim is the newest send.
      const older = this.olderSends.get(slot);
      if (older !== undefined) {
        page.lastSend[i] = older.pop() as number;
        if (older.length === 0) this.olderSends.delete(slot);
      } else {
        this.dropSends(slot);
      }
    }
    this.table.freeIfEmpty(slot);
  }

  check(key: string, candidate: CodeHash, now: number): number {
    const slot = this.table.shard(key).get(key) ?? NONE;
    const page = slot === NONE ? undefined : this.table.page(slot);
    const i = slot & IN_PAGE;
    const hasCode = page !== undefined && ((page.flags[i] as number) & HAS_CODE) !== 0;
    const live = hasCode && (page.expiresAt[i] as number) > now;
    const match = sameHashAt(candidate, live ? page.hashes : this.dummy, live ? i * HASH_BYTES : 0, this.scratch);
    if (!live) {
      if (hasCode) this.dropCode(slot);
      return 0;
    }
    if (match) {
      this.dropCode(slot);
      return CODE_ACCEPTED;
    }
    const left = (page.attempts[i] as number) - 1;
    page.attempts[i] = left;
    if (left <= 0) this.dropCode(slot);
    return left;
  }

  sweep(now: number, limit = Infinity): SweepResult {
    let removed = 0;
    let examined = 0;
    for (let slot = this.table.head(CODES); slot !== NONE; slot = this.table.head(CODES)) {
      if (removed >= limit) return { removed, examined };
      examined++;
      if ((this.table.page(slot).expiresAt[slot & IN_PAGE] as number) > now) break;
      this.dropCode(slot);
      removed++;
    }
    for (let slot = this.table.head(SENDS); slot !== NONE; slot = this.table.head(SENDS)) {
      if (removed >= limit) break;
      examined++;
      const page = this.table.page(slot);
      const i = slot & IN_PAGE;
      if ((page.lastSend[i] as number) > now - HOUR_MS || ((page.flags[i] as number) & PENDING) !== 0) break;
      this.dropSends(slot);
      this.table.freeIfEmpty(slot);
      removed++;
    }
    return { removed, examined };
  }

  peek(key: string): Readonly<StoredCode> | undefined {
    const slot = this.table.shard(key).get(key);
    if (slot === undefined) return undefined;
    const page = this.table.page(slot);
    const i = slot & IN_PAGE;
    if (((page.flags[i] as number) & HAS_CODE) === 0) return undefined;
    const at = i * HASH_BYTES;
    return { hash: page.hashes.toString('latin1', at, at + HASH_BYTES), expiresAt: page.expiresAt[i] as number, attemptsLeft: page.attempts[i] as number };
  }

  /** Sends in the last hour, counting the newest; forgets the older ones that left it. */
  private sendsInHour(slot: number, now: number): number {
    const since = now - HOUR_MS;
    const older = this.olderSends.get(slot);
    if ((this.table.page(slot).lastSend[slot & IN_PAGE] as number) <= since) {
      if (older !== undefined) this.olderSends.delete(slot);
      return 0;
    }
    if (older === undefined) return 1;
    while (older.length > 0 && (older[0] as number) <= since) older.shift();
    if (older.length === 0) this.olderSends.delete(slot);
    return 1 + older.length;
  }

  /**
   * The hash bytes stay until the slot's next code overwrites them: nothing
   * reads them without HAS_CODE, and zeroing them costs a sweep for nothing.
   */
  private dropCode(slot: number): void {
    this.table.unlink(CODES, slot);
    const page = this.table.page(slot);
    page.flags[slot & IN_PAGE] = (page.flags[slot & IN_PAGE] as number) & ~HAS_CODE;
    this.live--;
    this.table.freeIfEmpty(slot);
  }

  private dropSends(slot: number): void {
    this.table.unlink(SENDS, slot);
    const page = this.table.page(slot);
    page.flags[slot & IN_PAGE] = (page.flags[slot & IN_PAGE] as number) & ~HAS_SENDS;
    this.olderSends.delete(slot);
  }
}
