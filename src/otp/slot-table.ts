// The storage under the in-memory OTP store: one slot per address in
// columns of typed arrays, a key → slot index, a free list, and two doubly
// linked lists threaded through the slots. What the columns mean and when a
// slot moves on a list is the store's business (memory-store.ts).
//
// Layout. A million live codes must fit in well under 200 MB, so an address
// costs one Map entry (key → slot number) and one slot in a set of columns,
// not a JS object: epoch ms would be boxed HeapNumbers and hash strings cost
// more than their bytes (the figures: docs/decisions.md).
//
// Lists. Appending moves a slot to the back of a list in O(1), like the
// delete-and-set that kept two Maps in order before; the front is what has
// waited longest.
//
// Growth. The columns come in fixed pages of PAGE_SLOTS slots, and the index
// is split over SHARDS Maps: doubled columns and one big Map were copied or
// rehashed whole when full, which stalled the loop. A new page is one small
// allocation, and a shard rehashes a sixteenth of the index. Pages
// are kept once made (a slot's number is its place), so memory stays at the
// highest count the store has held.
import { HASH_BYTES } from './code.js';

export const NONE = -1;

const PAGE_BITS = 14;
/** slots per page: 16,384, about 1.2 MB of columns */
const PAGE_SLOTS = 1 << PAGE_BITS;
/** a slot's place in its page: `slot & IN_PAGE` */
export const IN_PAGE = PAGE_SLOTS - 1;
const SHARDS = 16;

/** The two lists, as offsets into a slot's four links (prev, next) and into the list ends (head, tail). */
export const CODES = 0;
export const SENDS = 2;
export type List = typeof CODES | typeof SENDS;

/** The columns of PAGE_SLOTS slots: one value per slot, `i` being the slot's place in its page. */
export class Page {
  readonly keys: string[] = new Array<string>(PAGE_SLOTS).fill('');
  readonly hashes = Buffer.alloc(PAGE_SLOTS * HASH_BYTES);
  readonly expiresAt = new Float64Array(PAGE_SLOTS);
  readonly lastSend = new Float64Array(PAGE_SLOTS);
  readonly attempts = new Uint8Array(PAGE_SLOTS);
  /** 0 means the slot holds nothing and may be freed */
  readonly flags = new Uint8Array(PAGE_SLOTS);
  /** per slot: CODES list prev, next; SENDS list prev, next */
  readonly links = new Int32Array(PAGE_SLOTS * 4);
}

/** FNV-1a over the key's UTF-16 units: spreads addresses evenly over the shards. */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % SHARDS;
}

export class SlotTable {
  /** key → slot, split by shardOf(key) */
  private readonly index: Map<string, number>[] = Array.from({ length: SHARDS }, () => new Map<string, number>());
  private readonly pages: Page[] = [];
  /** slots handed out so far; those below it not in use are on the free list */
  private used = 0;
  /** head of the free list, linked through the CODES list's `next` */
  private free = NONE;
  /** head and tail of the CODES list, then of the SENDS list */
  private readonly ends = new Int32Array([NONE, NONE, NONE, NONE]);

  /** The part of the index that holds `key`: found once per call, then used for lookup and insert alike. */
  shard(key: string): Map<string, number> {
    return this.index[shardOf(key)] as Map<string, number>;
  }

  page(slot: number): Page {
    return this.pages[slot >>> PAGE_BITS] as Page;
  }

  /** A slot for `key`, its flags 0; `shard` is shard(key). */
  allocate(key: string, shard: Map<string, number>): number {
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

  /** Gives the slot back when its flags say it holds nothing. */
  freeIfEmpty(slot: number): void {
    const page = this.page(slot);
    const i = slot & IN_PAGE;
    if (page.flags[i] !== 0) return;
    const key = page.keys[i] as string;
    this.shard(key).delete(key);
    page.keys[i] = '';
    page.links[4 * i + CODES + 1] = this.free;
    this.free = slot;
  }

  /** The slot that has waited longest on `list`, NONE when it is empty. */
  head(list: List): number {
    return this.ends[list] as number;
  }

  append(list: List, slot: number): void {
    const tail = this.ends[list + 1] as number;
    this.setLink(slot, list, tail);
    this.setLink(slot, list + 1, NONE);
    if (tail === NONE) this.ends[list] = slot;
    else this.setLink(tail, list + 1, slot);
    this.ends[list + 1] = slot;
  }

  unlink(list: List, slot: number): void {
    const prev = this.link(slot, list);
    const next = this.link(slot, list + 1);
    if (prev === NONE) this.ends[list] = next;
    else this.setLink(prev, list + 1, next);
    if (next === NONE) this.ends[list + 1] = prev;
    else this.setLink(next, list, prev);
  }

  /** Slot `slot`'s link `k` (0-3: CODES prev, next, SENDS prev, next). */
  private link(slot: number, k: number): number {
    return this.page(slot).links[4 * (slot & IN_PAGE) + k] as number;
  }

  private setLink(slot: number, k: number, to: number): void {
    this.page(slot).links[4 * (slot & IN_PAGE) + k] = to;
  }
}
