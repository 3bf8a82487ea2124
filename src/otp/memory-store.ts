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
// and then goes back to a free list for reuse.
//
// Growth. The columns come in fixed pages of PAGE_SLOTS slots, and the key →
// slot index is split over SHARDS Maps. Doubled columns and one big Map had
// to be copied or rehashed whole when full: filling to a million codes
// blocked the event loop for 76 ms at 524,288 addresses and 159 ms at
// 1,048,576. A new page is one small allocation, and a shard rehashes a
// sixteenth of the index. Pages are kept once made (a slot's number is its
// place), so memory stays at the highest count the store has held.
import { CodeHasher, HASH_BYTES, sameHashAt, type CodeHash } from './code.js';
import { CODE_ACCEPTED, type OtpLimits, type OtpStore, type Reservation, type StoredCode, type SweepResult } from './store.js';

const HOUR_MS = 3_600_000;
const NONE = -1;

const PAGE_BITS = 14;
/** slots per page: 16,384, about 1.2 MB of columns */
const PAGE_SLOTS = 1 << PAGE_BITS;
const IN_PAGE = PAGE_SLOTS - 1;
const SHARDS = 16;

/** flags: the slot has a code (is on the code list), a send in the hour (is on the send list), a mail in flight */
const HAS_CODE = 1;
const HAS_SENDS = 2;
const PENDING = 4;

/** the two lists, as offsets into a slot's four links (prev, next) and into `ends` (head, tail) */
const CODES = 0;
const SENDS = 2;
type List = typeof CODES | typeof SENDS;

/** The columns of PAGE_SLOTS slots: one value per slot, `i` being the slot's place in its page. */
class Page {
  readonly keys: string[] = new Array<string>(PAGE_SLOTS).fill('');
  readonly hashes = Buffer.alloc(PAGE_SLOTS * HASH_BYTES);
  readonly expiresAt = new Float64Array(PAGE_SLOTS);
  /** newest send in the hour; older ones (second send onwards) are in `olderSends` */
  readonly lastSend = new Float64Array(PAGE_SLOTS);
  readonly attempts = new Uint8Array(PAGE_SLOTS);
  readonly flags = new Uint8Array(PAGE_SLOTS);
  /** per slot: code list prev, next; send list prev, next */
  readonly links = new Int32Array(PAGE_SLOTS * 4);
}

/** FNV-1a over the key's UTF-16 units: spreads addresses evenly over the shards. */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % SHARDS;
}

export class InMemoryOtpStore implements OtpStore {
  /** normalised address → slot, split by shardOf(address) */
  private readonly index: Map<string, number>[] = Array.from({ length: SHARDS }, () => new Map<string, number>());
  private readonly pages: Page[] = [];
  /** slots handed out so far; those below it not in use are on the free list */
  private used = 0;
  /** head of the free list, linked through the code list's `next` */
  private free = NONE;
  /** codes stored: live or not yet swept */
  private live = 0;
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
  }

  get size(): number {
    return this.live;
  }

  reserve(key: string, now: number): Reservation {
    const { resendCooldownMs, maxSendsPerHour, lifespanMs } = this.limits;
    const shard = this.shard(key);
    let slot = shard.get(key);
    let inHour = 0;
    if (slot !== undefined) {
      const page = this.page(slot);
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
      slot = this.allocate(key, shard);
    }
    const page = this.page(slot);
    const i = slot & IN_PAGE;
    if (inHour > 0) {
      const older = this.olderSends.get(slot);
      if (older === undefined) this.olderSends.set(slot, [page.lastSend[i] as number]);
      else older.push(page.lastSend[i] as number);
    }
    page.lastSend[i] = now;
    if (((page.flags[i] as number) & HAS_SENDS) !== 0) this.unlink(SENDS, slot);
    this.append(SENDS, slot);
    page.flags[i]! |= HAS_SENDS | PENDING;
    return { ok: true };
  }

  commit(key: string, hash: CodeHash, now: number): void {
    const shard = this.shard(key);
    const slot = shard.get(key) ?? this.allocate(key, shard);
    const page = this.page(slot);
    const i = slot & IN_PAGE;
    page.flags[i] = (page.flags[i] as number) & ~PENDING;
    page.hashes.write(hash, i * HASH_BYTES, HASH_BYTES, 'latin1');
    page.expiresAt[i] = now + this.limits.lifespanMs;
    page.attempts[i] = this.limits.maxAttempts;
    if (((page.flags[i] as number) & HAS_CODE) !== 0) this.unlink(CODES, slot);
    else this.live++;
    this.append(CODES, slot);
    page.flags[i]! |= HAS_CODE;
  }

  release(key: string, refund: boolean): void {
    const slot = this.shard(key).get(key);
    if (slot === undefined) return;
    const page = this.page(slot);
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
    this.freeIfEmpty(slot);
  }

  check(key: string, candidate: CodeHash, now: number): number {
    const slot = this.shard(key).get(key) ?? NONE;
    const page = slot === NONE ? undefined : this.page(slot);
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
    for (let slot = this.ends[CODES] as number; slot !== NONE; slot = this.ends[CODES] as number) {
      if (removed >= limit) return { removed, examined };
      examined++;
      if ((this.page(slot).expiresAt[slot & IN_PAGE] as number) > now) break;
      this.dropCode(slot);
      removed++;
    }
    for (let slot = this.ends[SENDS] as number; slot !== NONE; slot = this.ends[SENDS] as number) {
      if (removed >= limit) break;
      examined++;
      const page = this.page(slot);
      const i = slot & IN_PAGE;
      if ((page.lastSend[i] as number) > now - HOUR_MS || ((page.flags[i] as number) & PENDING) !== 0) break;
      this.dropSends(slot);
      this.freeIfEmpty(slot);
      removed++;
    }
    return { removed, examined };
  }

  peek(key: string): Readonly<StoredCode> | undefined {
    const slot = this.shard(key).get(key);
    if (slot === undefined) return undefined;
    const page = this.page(slot);
    const i = slot & IN_PAGE;
    if (((page.flags[i] as number) & HAS_CODE) === 0) return undefined;
    const at = i * HASH_BYTES;
    return { hash: page.hashes.toString('latin1', at, at + HASH_BYTES), expiresAt: page.expiresAt[i] as number, attemptsLeft: page.attempts[i] as number };
  }

  /** The part of the index that holds `key`: found once per call, then used for lookup and insert alike. */
  private shard(key: string): Map<string, number> {
    return this.index[shardOf(key)] as Map<string, number>;
  }

  private page(slot: number): Page {
    return this.pages[slot >>> PAGE_BITS] as Page;
  }

  /** Sends in the last hour, counting the newest; forgets the older ones that left it. */
  private sendsInHour(slot: number, now: number): number {
    const since = now - HOUR_MS;
    const older = this.olderSends.get(slot);
    if ((this.page(slot).lastSend[slot & IN_PAGE] as number) <= since) {
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
    const page = this.page(slot);
    page.flags[slot & IN_PAGE] = (page.flags[slot & IN_PAGE] as number) & ~HAS_CODE;
    this.live--;
    this.freeIfEmpty(slot);
  }

  private dropSends(slot: number): void {
    this.unlink(SENDS, slot);
    const page = this.page(slot);
    page.flags[slot & IN_PAGE] = (page.flags[slot & IN_PAGE] as number) & ~HAS_SENDS;
    this.olderSends.delete(slot);
  }

  private allocate(key: string, shard: Map<string, number>): number {
    let slot: number;
    if (this.free !== NONE) {
      slot = this.free;
      this.free = this.page(slot).links[4 * (slot & IN_PAGE) + CODES + 1] as number;
    } else {
      slot = this.used++;
      if ((slot & IN_PAGE) === 0) this.pages.push(new Page());
    }
    const page = this.page(slot);
    page.keys[slot & IN_PAGE] = key;
    page.flags[slot & IN_PAGE] = 0;
    shard.set(key, slot);
    return slot;
  }

  private freeIfEmpty(slot: number): void {
    const page = this.page(slot);
    const i = slot & IN_PAGE;
    if (page.flags[i] !== 0) return;
    const key = page.keys[i] as string;
    this.shard(key).delete(key);
    page.keys[i] = '';
    page.links[4 * i + CODES + 1] = this.free;
    this.free = slot;
  }

  /** Slot `slot`'s link `k` (0-3: code prev, next, send prev, next). */
  private link(slot: number, k: number): number {
    return this.page(slot).links[4 * (slot & IN_PAGE) + k] as number;
  }

  private setLink(slot: number, k: number, to: number): void {
    this.page(slot).links[4 * (slot & IN_PAGE) + k] = to;
  }

  private append(list: List, slot: number): void {
    const tail = this.ends[list + 1] as number;
    this.setLink(slot, list, tail);
    this.setLink(slot, list + 1, NONE);
    if (tail === NONE) this.ends[list] = slot;
    else this.setLink(tail, list + 1, slot);
    this.ends[list + 1] = slot;
  }

  private unlink(list: List, slot: number): void {
    const prev = this.link(slot, list);
    const next = this.link(slot, list + 1);
    if (prev === NONE) this.ends[list] = next;
    else this.setLink(prev, list + 1, next);
    if (next === NONE) this.ends[list + 1] = prev;
    else this.setLink(next, list, prev);
  }
}
