// The in-memory OtpStore: one process serves every user.
//
// Layout. A million live codes must fit in well under 200 MB, so an address
// costs one Map entry (key → slot number) and one slot in a set of columns
// (typed arrays, one value per slot), not a JS object. Objects were measured:
// two Maps of records cost 267 bytes per code, and even one Map of one
// compact record {hash string, expiry, attempts, send time} costs 205 before
// any expiry order, because epoch ms are not small integers (V8 boxes each in
// a 16-byte HeapNumber) and a 32-character string costs 48 bytes plus the
// pointer to it. A slot costs 74 bytes (32 of them the raw hash), the Map
// entry about 28, and the key string the caller made: 148 per code measured.
//
// Order. A code expires `lifespanMs` after its commit, the hourly send
// history an hour after its newest send: two orders, so each slot sits on two
// doubly linked lists threaded through `links` (code list in commit order,
// send list in order of the newest send). A commit or a send moves the slot to
// the back of its list in O(1), like the delete-and-set that kept two Maps in
// order before. Both lengths are fixed and `now` does not go backwards, so
// list order is expiry order, and a sweep walks each list from the front and
// stops at the first entry still live: its cost is the number it removes.
// Should the wall clock step back, the order is off by that step for a while;
// that only delays a removal, because check() and reserve() test time themselves.
//
// A slot lives while it has a code, a send in the hour or a mail in flight,
// and then goes back to a free list for reuse. The columns double when full,
// as a Map's table does; they do not shrink.
import { CodeHasher, HASH_BYTES, sameHashAt, type CodeHash } from './code.js';
import { CODE_ACCEPTED, type OtpLimits, type OtpStore, type Reservation, type StoredCode, type SweepResult } from './store.js';

const HOUR_MS = 3_600_000;
const NONE = -1;
const INITIAL_SLOTS = 1024;

/** flags: the slot has a code (is on the code list), a send in the hour (is on the send list), a mail in flight */
const HAS_CODE = 1;
const HAS_SENDS = 2;
const PENDING = 4;

/** the two lists, as offsets into a slot's four links (prev, next) and into `ends` (head, tail) */
const CODES = 0;
const SENDS = 2;
type List = typeof CODES | typeof SENDS;

export class InMemoryOtpStore implements OtpStore {
  /** normalised address → slot */
  private readonly slots = new Map<string, number>();
  private capacity = 0;
  /** slots handed out so far; those below it not in use are on the free list */
  private used = 0;
  /** head of the free list, linked through the code list's `next` */
  private free = NONE;
  /** codes stored: live or not yet swept */
  private live = 0;

  // One value per slot.
  private keys: string[] = [];
  private hashes = Buffer.alloc(0);
  private expiresAt = new Float64Array(0);
  /** newest send in the hour; older ones (second send onwards) are in `olderSends` */
  private lastSend = new Float64Array(0);
  private attempts = new Uint8Array(0);
  private flags = new Uint8Array(0);
  /** per slot: code list prev, next; send list prev, next */
  private links = new Int32Array(0);
  /** head and tail of the code list, then of the send list */
  private readonly ends = new Int32Array([NONE, NONE, NONE, NONE]);
  /**
   * Slots with more than one send in the hour → the older ones, oldest first.
   * Most addresses get one code an hour: they pay nothing here.
   */
  private readonly olderSends = new Map<number, number[]>();

  /** compared against when there is no live code, so that path costs the same */
  private readonly dummy = Buffer.from(CodeHasher.dummy(), 'latin1');
  private readonly scratch = { a: Buffer.alloc(HASH_BYTES), b: Buffer.alloc(HASH_BYTES) };

  constructor(private readonly limits: OtpLimits) {
    if (limits.maxAttempts > 255) throw new RangeError('maxAttempts above 255 does not fit the store');
    this.grow(INITIAL_SLOTS);
  }

  get size(): number {
    return this.live;
  }

  reserve(key: string, now: number): Reservation {
    const { resendCooldownMs, maxSendsPerHour, lifespanMs } = this.limits;
    let slot = this.slots.get(key);
    let inHour = 0;
    if (slot !== undefined) {
      const flags = this.flags[slot] as number;
      if ((flags & PENDING) !== 0) return { ok: false, reason: 'pending', retryAfterMs: Math.max(1000, resendCooldownMs) };
      const expiresAt = this.expiresAt[slot] as number;
      const liveSince = expiresAt - lifespanMs;
      if ((flags & HAS_CODE) !== 0 && expiresAt > now && now - liveSince < resendCooldownMs) {
        return { ok: false, reason: 'cooldown', retryAfterMs: liveSince + resendCooldownMs - now };
      }
      if ((flags & HAS_SENDS) !== 0) {
        inHour = this.sendsInHour(slot, now);
        if (inHour >= maxSendsPerHour) {
          const oldest = this.olderSends.get(slot)?.[0] ?? (this.lastSend[slot] as number);
          return { ok: false, reason: 'hourly', retryAfterMs: oldest + HOUR_MS - now };
        }
      }
    } else {
      slot = this.allocate(key);
    }
    if (inHour > 0) {
      const older = this.olderSends.get(slot);
      if (older === undefined) this.olderSends.set(slot, [this.lastSend[slot] as number]);
      else older.push(this.lastSend[slot] as number);
    }
    this.lastSend[slot] = now;
    if (((this.flags[slot] as number) & HAS_SENDS) !== 0) this.unlink(SENDS, slot);
    this.append(SENDS, slot);
    this.flags[slot]! |= HAS_SENDS | PENDING;
    return { ok: true };
  }

  commit(key: string, hash: CodeHash, now: number): void {
    const slot = this.slots.get(key) ?? this.allocate(key);
    this.flags[slot] = (this.flags[slot] as number) & ~PENDING;
    this.hashes.write(hash, slot * HASH_BYTES, HASH_BYTES, 'latin1');
    this.expiresAt[slot] = now + this.limits.lifespanMs;
    this.attempts[slot] = this.limits.maxAttempts;
    if (((this.flags[slot] as number) & HAS_CODE) !== 0) this.unlink(CODES, slot);
    else this.live++;
    this.append(CODES, slot);
    this.flags[slot]! |= HAS_CODE;
  }

  release(key: string, refund: boolean): void {
    const slot = this.slots.get(key);
    if (slot === undefined || ((this.flags[slot] as number) & PENDING) === 0) return;
    this.flags[slot] = (this.flags[slot] as number) & ~PENDING;
    if (refund) {
      // Sends of one address never overlap, so its claim is the newest send.
      const older = this.olderSends.get(slot);
      if (older !== undefined) {
        this.lastSend[slot] = older.pop() as number;
        if (older.length === 0) this.olderSends.delete(slot);
      } else {
        this.dropSends(slot);
      }
    }
    this.freeIfEmpty(slot);
  }

  check(key: string, candidate: CodeHash, now: number): number {
    const slot = this.slots.get(key) ?? NONE;
    const live = slot !== NONE && ((this.flags[slot] as number) & HAS_CODE) !== 0 && (this.expiresAt[slot] as number) > now;
    const match = sameHashAt(candidate, live ? this.hashes : this.dummy, live ? slot * HASH_BYTES : 0, this.scratch);
    if (!live) {
      if (slot !== NONE && ((this.flags[slot] as number) & HAS_CODE) !== 0) this.dropCode(slot);
      return 0;
    }
    if (match) {
      this.dropCode(slot);
      return CODE_ACCEPTED;
    }
    const left = (this.attempts[slot] as number) - 1;
    this.attempts[slot] = left;
    if (left <= 0) this.dropCode(slot);
    return left;
  }

  sweep(now: number, limit = Infinity): SweepResult {
    let removed = 0;
    let examined = 0;
    for (let slot = this.ends[CODES] as number; slot !== NONE; slot = this.ends[CODES] as number) {
      if (removed >= limit) return { removed, examined };
      examined++;
      if ((this.expiresAt[slot] as number) > now) break;
      this.dropCode(slot);
      removed++;
    }
    for (let slot = this.ends[SENDS] as number; slot !== NONE; slot = this.ends[SENDS] as number) {
      if (removed >= limit) break;
      examined++;
      if ((this.lastSend[slot] as number) > now - HOUR_MS || ((this.flags[slot] as number) & PENDING) !== 0) break;
      this.dropSends(slot);
      this.freeIfEmpty(slot);
      removed++;
    }
    return { removed, examined };
  }

  peek(key: string): Readonly<StoredCode> | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined || ((this.flags[slot] as number) & HAS_CODE) === 0) return undefined;
    const at = slot * HASH_BYTES;
    return { hash: this.hashes.toString('latin1', at, at + HASH_BYTES), expiresAt: this.expiresAt[slot] as number, attemptsLeft: this.attempts[slot] as number };
  }

  /** Sends in the last hour, counting the newest; forgets the older ones that left it. */
  private sendsInHour(slot: number, now: number): number {
    const since = now - HOUR_MS;
    const older = this.olderSends.get(slot);
    if ((this.lastSend[slot] as number) <= since) {
      if (older !== undefined) this.olderSends.delete(slot);
      return 0;
    }
    if (older === undefined) return 1;
    while (older.length > 0 && (older[0] as number) <= since) older.shift();
    if (older.length === 0) this.olderSends.delete(slot);
    return 1 + older.length;
  }

  /**
   * The hash bytes stay until the slot's next code overwrites them, as a
   * dropped hash string used to stay until GC: nothing reads them without
   * HAS_CODE, and zeroing them cost the first (unoptimised) sweep slice ~0.3 ms.
   */
  private dropCode(slot: number): void {
    this.unlink(CODES, slot);
    this.flags[slot] = (this.flags[slot] as number) & ~HAS_CODE;
    this.live--;
    this.freeIfEmpty(slot);
  }

  private dropSends(slot: number): void {
    this.unlink(SENDS, slot);
    this.flags[slot] = (this.flags[slot] as number) & ~HAS_SENDS;
    this.olderSends.delete(slot);
  }

  private allocate(key: string): number {
    if (this.free === NONE && this.used === this.capacity) this.grow(this.capacity * 2);
    let slot: number;
    if (this.free !== NONE) {
      slot = this.free;
      this.free = this.links[4 * slot + CODES + 1] as number;
    } else {
      slot = this.used++;
    }
    this.keys[slot] = key;
    this.flags[slot] = 0;
    this.slots.set(key, slot);
    return slot;
  }

  private freeIfEmpty(slot: number): void {
    if (this.flags[slot] !== 0) return;
    this.slots.delete(this.keys[slot] as string);
    this.keys[slot] = '';
    this.links[4 * slot + CODES + 1] = this.free;
    this.free = slot;
  }

  private append(list: List, slot: number): void {
    const tail = this.ends[list + 1] as number;
    this.links[4 * slot + list] = tail;
    this.links[4 * slot + list + 1] = NONE;
    if (tail === NONE) this.ends[list] = slot;
    else this.links[4 * tail + list + 1] = slot;
    this.ends[list + 1] = slot;
  }

  private unlink(list: List, slot: number): void {
    const prev = this.links[4 * slot + list] as number;
    const next = this.links[4 * slot + list + 1] as number;
    if (prev === NONE) this.ends[list] = next;
    else this.links[4 * prev + list + 1] = next;
    if (next === NONE) this.ends[list + 1] = prev;
    else this.links[4 * next + list] = prev;
  }

  private grow(capacity: number): void {
    const keys = new Array<string>(capacity).fill('');
    for (let i = 0; i < this.used; i++) keys[i] = this.keys[i] as string;
    this.keys = keys;
    this.hashes = copyInto(Buffer.alloc(capacity * HASH_BYTES), this.hashes);
    this.expiresAt = copyInto(new Float64Array(capacity), this.expiresAt);
    this.lastSend = copyInto(new Float64Array(capacity), this.lastSend);
    this.attempts = copyInto(new Uint8Array(capacity), this.attempts);
    this.flags = copyInto(new Uint8Array(capacity), this.flags);
    this.links = copyInto(new Int32Array(capacity * 4), this.links);
    this.capacity = capacity;
  }
}

function copyInto<T extends Uint8Array | Float64Array | Int32Array>(to: T, from: T): T {
  to.set(from as never);
  return to;
}
