// The outbox's claim on SQLite: which due messages go next. By lane, HIGH
// first, but BULK owed its share (LANE_BULK_MIN_SHARE); within a lane,
// owners take turns from where the last claim ended, each its oldest due
// first. The queries are index seeks (messages_turns), given by the tables.
import { BULK_LANE, HIGH_LANE, NORMAL_LANE, type Lane } from '../mail/lane.js';
import type { Claimed } from './store.js';

/** owners one claim looks at in a lane, at most: the rest wait for the next claim's turns */
const OWNERS_PER_CLAIM = 256;
/** what a sum of shares may fall short of a whole message by its rounding */
const ROUNDING = 1e-6;

/** The seeks the turns are made of. */
export interface TurnSeeks<R> {
  /** the first owner (in key order) with anything waiting in `lane` */
  firstOwner(lane: Lane): string | undefined;
  ownerAfter(lane: Lane, owner: string): string | undefined;
  /** `owner`'s messages due by `now` in `lane`, oldest first, at most `limit` */
  dueOf(lane: Lane, owner: string, now: number, limit: number): R[];
}

export class LaneTurns<R> {
  /** by lane: the owner the last claim ended its turns with (the next begins after it) */
  private readonly lastOwner = new Map<number, string>();
  /** messages BULK is owed (see claim) */
  private bulkCredit = 0;
  private readonly earn: number;

  constructor(
    private readonly seeks: TurnSeeks<R>,
    bulkShare: number,
    /** takes a due message (SENDING now); undefined when it moved on */
    private readonly take: (row: R, now: number) => Claimed | undefined,
  ) {
    this.earn = bulkShare >= 1 ? Infinity : bulkShare / (1 - bulkShare);
  }

  /**
   * HIGH first, then NORMAL, then BULK; but while BULK has messages due it
   * earns a credit on every other message claimed (bulkShare of all), and
   * what it is owed it takes first.
   */
  claim(n: number, now: number): Claimed[] {
    const claimed: Claimed[] = [];
    const owed = Math.min(n, Math.floor(this.bulkCredit + ROUNDING));
    if (owed > 0) this.bulkCredit -= this.claimLane(BULK_LANE, owed, now, claimed);
    for (const lane of [HIGH_LANE, NORMAL_LANE, BULK_LANE]) {
      if (claimed.length >= n) break;
      this.claimLane(lane, n - claimed.length, now, claimed);
    }
    const others = claimed.filter((c) => c.lane !== BULK_LANE).length;
    const bulkWaits = this.claimable(BULK_LANE, now);
    this.bulkCredit = bulkWaits ? Math.min(Math.max(1, n), this.bulkCredit + others * this.earn) : 0;
    return claimed;
  }

  /** Whether `lane` has a message due (its owners' first due ones, one seek each). */
  private claimable(lane: Lane, now: number): boolean {
    for (let owner = this.seeks.firstOwner(lane), seen = 0; owner !== undefined && seen < OWNERS_PER_CLAIM; owner = this.seeks.ownerAfter(lane, owner), seen++) {
      if (this.seeks.dueOf(lane, owner, now, 1).length > 0) return true;
    }
    return false;
  }

  /**
   * Claims up to `n` due messages of `lane`, owners taking turns from the
   * one after where the last claim ended: each owner with something due
   * gets an equal part of what is left, its oldest due first, until `n` are
   * claimed or nothing is due. Returns how many.
   */
  private claimLane(lane: Lane, n: number, now: number, into: Claimed[]): number {
    const owners = this.ownersOf(lane);
    if (owners.length === 0) return 0;
    let taken = 0;
    let active = owners;
    while (taken < n && active.length > 0) {
      const part = Math.max(1, Math.floor((n - taken) / active.length));
      const still: string[] = [];
      for (const owner of active) {
        if (taken >= n) break;
        const rows = this.seeks.dueOf(lane, owner, now, Math.min(part, n - taken));
        for (const row of rows) {
          const c = this.take(row, now);
          if (c === undefined) continue;
          into.push(c);
          taken++;
        }
        if (rows.length > 0) this.lastOwner.set(lane, owner);
        if (rows.length === part) still.push(owner);
      }
      active = still;
    }
    return taken;
  }

  /** The owners with messages waiting in `lane`, from the one after the last served, round the ring. */
  private ownersOf(lane: Lane): string[] {
    const after = this.lastOwner.get(lane);
    const owners: string[] = [];
    const next = (o: string): string | undefined => this.seeks.ownerAfter(lane, o);
    const walk = (first: string | undefined, upTo?: string): void => {
      for (let o = first; o !== undefined && (upTo === undefined || o <= upTo) && owners.length < OWNERS_PER_CLAIM; o = next(o)) owners.push(o);
    };
    if (after !== undefined) walk(next(after));
    walk(this.seeks.firstOwner(lane), after);
    return owners;
  }
}
