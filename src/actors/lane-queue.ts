// The order in which queued jobs go to connections: by lane (lane.ts), code
// mail first and bulk last, but bulk never starved: while it has work it
// is owed at least `bulkShare` of what goes out (a credit it earns on every
// other job taken). Within a lane, jobs that came back (from a connection
// that lost its session, or at the end of a retry backoff) go first, in the
// order they came back, and then callers take turns: a caller with 100,000
// queued and a caller with one each get the next job in turn.
//
// TRAP: a caller's queue is kept (empty) when it drains, and the empty ones
// are forgotten only when there are many: one caller's queue emptied and
// made again every mail is a table entry made and dropped every mail (see
// job-ledger.ts).
import { Deque } from '../lib/deque.js';
import { BULK_LANE, LANES, type Lane } from '../mail/lane.js';

interface Queued {
  readonly lane: Lane;
  readonly owner: string;
}

/** a whole job owed, give or take the sum's rounding */
const OWED = 1 - 1e-6;
/** empty callers' queues kept before they are forgotten */
const KEEP_EMPTY = 64;

class Turns<T extends Queued> {
  private readonly back = new Deque<T>();
  private readonly queues = new Map<string, Deque<T>>();
  /** callers with jobs waiting, whose turn is next first */
  private readonly turns = new Deque<string>();
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(job: T): void {
    let q = this.queues.get(job.owner);
    if (q === undefined) {
      if (this.queues.size >= KEEP_EMPTY) this.forgetEmpty();
      q = new Deque<T>();
      this.queues.set(job.owner, q);
    }
    if (q.length === 0) this.turns.push(job.owner);
    q.push(job);
    this.count++;
  }

  pushBack(job: T): void {
    this.back.push(job);
    this.count++;
  }

  peek(): T | undefined {
    if (this.back.length > 0) return this.back.peek();
    const owner = this.turns.peek();
    return owner === undefined ? undefined : this.queues.get(owner)?.peek();
  }

  shift(): T | undefined {
    if (this.back.length > 0) {
      this.count--;
      return this.back.shift();
    }
    const owner = this.turns.shift();
    if (owner === undefined) return undefined;
    const q = this.queues.get(owner) as Deque<T>;
    const job = q.shift();
    if (q.length > 0) this.turns.push(owner);
    this.count--;
    return job;
  }

  removeWhere(drop: (job: T) => boolean): T[] {
    const removed = this.back.removeWhere(drop);
    for (const [owner, q] of this.queues) {
      if (q.length === 0) continue;
      removed.push(...q.removeWhere(drop));
      if (q.length === 0) this.turns.removeWhere((o) => o === owner);
    }
    this.count -= removed.length;
    return removed;
  }

  private forgetEmpty(): void {
    for (const [owner, q] of this.queues) if (q.length === 0) this.queues.delete(owner);
  }
}

export class LaneQueue<T extends Queued> {
  private readonly lanes: Turns<T>[] = LANES.map(() => new Turns<T>());
  /** jobs bulk is owed: earned while it waits and others go */
  private credit = 0;
  private readonly earn: number;
  private count = 0;

  /** `bulkShare`: the least share of the jobs taken that bulk gets while it has work (0 to 1) */
  constructor(bulkShare: number) {
    this.earn = bulkShare >= 1 ? Infinity : bulkShare / (1 - bulkShare);
  }

  get length(): number {
    return this.count;
  }

  /** A job that never left joins its caller's queue in its lane. */
  push(job: T): void {
    (this.lanes[job.lane] as Turns<T>).push(job);
    this.count++;
  }

  /** A job that came back goes ahead of those that never left, in its lane. */
  pushBack(job: T): void {
    (this.lanes[job.lane] as Turns<T>).pushBack(job);
    this.count++;
  }

  peek(): T | undefined {
    return this.next()?.peek();
  }

  /** The job `peek` named, out of the queue. */
  shift(): T | undefined {
    const lane = this.next();
    if (lane === undefined) return undefined;
    const job = lane.shift() as T;
    this.count--;
    const bulk = this.lanes[BULK_LANE] as Turns<T>;
    if (job.lane === BULK_LANE) this.credit = Math.max(0, this.credit - 1);
    else if (bulk.length > 0) this.credit = Math.min(this.credit + this.earn, 1);
    if (bulk.length === 0) this.credit = 0;
    return job;
  }

  removeWhere(drop: (job: T) => boolean): T[] {
    const removed: T[] = [];
    for (const lane of this.lanes) removed.push(...lane.removeWhere(drop));
    this.count -= removed.length;
    return removed;
  }

  /** The lane whose job goes next: bulk when it is owed one, else the first with work. */
  private next(): Turns<T> | undefined {
    const bulk = this.lanes[BULK_LANE] as Turns<T>;
    if (this.credit >= OWED && bulk.length > 0) return bulk;
    for (const lane of this.lanes) if (lane.length > 0) return lane;
    return undefined;
  }
}
