// Where every mail job the supervisor took in is, until it is settled.
//
// Invariant: an unsettled job is in exactly one place: queued (waiting for
// a connection), waiting out a retry backoff, or held by one connection. Its
// `place` says which, and only this module writes it. A job settled while
// queued (its caller gave up) stays queued until dispatch or the sweep
// passes it, and then it is out.
//
// The queue's order is lane-queue.ts's: by lane, callers taking turns
// within one, and a job that was already under way (it came back from a
// connection that lost its session before the relay saw it, or at the end
// of a retry backoff) ahead of those of its lane that never left.
//
// TRAP: holdings are one array per connection for the connection's life,
// not a Map or Set keyed by job: a table that gains and loses an entry every
// mail leaves copies in old space that keep finished jobs alive until the
// next full GC (docs/decisions.md). Retries are rare enough for a Set.
import { traceHanded } from '../lib/tracing.js';
import type { MailJob } from '../mail/job.js';
import { LaneQueue } from './lane-queue.js';

/** owners' counts kept at zero before they are forgotten (see the TRAP in lane-queue.ts) */
const KEEP_IDLE_OWNERS = 64;

export class JobLedger {
  private readonly queue: LaneQueue<MailJob>;
  /** queued jobs by owner (QUEUE_LIMIT_PER_CALLER) */
  private readonly owners = new Map<string, number>();
  private readonly retrying = new Set<MailJob>();
  private readonly holdings = new Map<string, MailJob[]>();
  private heldTotal = 0;
  private durableQueued = 0;

  /** `bulkShare`: LANE_BULK_MIN_SHARE (see lane-queue.ts) */
  constructor(bulkShare = 0.1) {
    this.queue = new LaneQueue(bulkShare);
  }

  /** jobs waiting for a connection, every lane */
  get queued(): number {
    return this.queue.length;
  }

  /** of those, `owner`'s */
  queuedOf(owner: string): number {
    return this.owners.get(owner) ?? 0;
  }


  /** of those, jobs from the outbox */
  get queuedDurable(): number {
    return this.durableQueued;
  }

  get waitingRetry(): number {
    return this.retrying.size;
  }

  get heldCount(): number {
    return this.heldTotal;
  }

  /** nothing queued, waiting for a retry or held */
  get empty(): boolean {
    return this.queued === 0 && this.retrying.size === 0 && this.heldTotal === 0;
  }

  /** jobs `cid` holds */
  holding(cid: string): number {
    return this.holdings.get(cid)?.length ?? 0;
  }

  /** A new job joins the end of its caller's queue in its lane. */
  admit(job: MailJob): void {
    this.enqueue(job, false);
  }

  /** The job dispatch would take next. */
  peek(): MailJob | undefined {
    return this.queue.peek();
  }

  /** Takes the head of the queue out of the supervisor's hands (it is settled, or about to be). */
  drop(): MailJob | undefined {
    const job = this.dequeue();
    if (job !== undefined) this.leave(job);
    return job;
  }

  /** The head of the queue goes to connection `cid`. */
  hand(cid: string): MailJob {
    const job = this.dequeue() as MailJob;
    job.place = 'held';
    job.holder = cid;
    traceHanded(job.trace, cid);
    let held = this.holdings.get(cid);
    if (held === undefined) {
      held = [];
      this.holdings.set(cid, held);
    }
    held.push(job);
    this.heldTotal++;
    return job;
  }

  /** Its connection reported the job's outcome: it leaves the ledger. */
  release(job: MailJob): void {
    this.unhold(job);
    this.leave(job);
  }

  /** Its connection gave it back before the relay saw it: back ahead in its lane. */
  giveBack(job: MailJob): void {
    this.unhold(job);
    this.enqueue(job, true);
  }

  /** Its connection reported a failure worth retrying: it waits out a backoff. */
  deferRetry(job: MailJob): void {
    this.unhold(job);
    job.place = 'retrying';
    this.retrying.add(job);
  }

  /** Its backoff is over: back ahead in its lane. False when it was failed meanwhile (shutdown). */
  retryDue(job: MailJob): boolean {
    if (!this.retrying.delete(job)) return false;
    this.enqueue(job, true);
    return true;
  }

  /** The jobs a connection whose actor died held (it can report nothing): back ahead in their lanes, oldest first. */
  reclaim(cid: string): void {
    for (const job of this.forfeit(cid)) this.enqueue(job, true);
  }

  /** The jobs a connection whose actor died held, out of the supervisor's hands. */
  forfeit(cid: string): MailJob[] {
    const held = this.holdings.get(cid);
    if (held === undefined || held.length === 0) return [];
    const jobs = held.splice(0);
    this.heldTotal -= jobs.length;
    for (const job of jobs) {
      this.leave(job);
      job.holder = undefined;
    }
    return jobs;
  }

  /** Removes the queued jobs for which `drop` is true, keeping the order of the rest. */
  removeQueued(drop: (job: MailJob) => boolean): MailJob[] {
    const removed = this.queue.removeWhere(drop);
    for (const job of removed) {
      this.counted(job, -1);
      this.leave(job);
    }
    return removed;
  }

  /** Takes every job no connection holds (queued or waiting for a retry) out. */
  takeWaiting(): MailJob[] {
    const jobs = [...this.retrying];
    this.retrying.clear();
    for (const job of jobs) this.leave(job);
    for (let job = this.drop(); job !== undefined; job = this.drop()) jobs.push(job);
    return jobs;
  }

  private enqueue(job: MailJob, back: boolean): void {
    job.place = 'queued';
    this.counted(job, 1);
    if (back) this.queue.pushBack(job);
    else this.queue.push(job);
  }

  /** The head of the queue, out of it. */
  private dequeue(): MailJob | undefined {
    const job = this.queue.shift();
    if (job !== undefined) this.counted(job, -1);
    return job;
  }

  private counted(job: MailJob, by: 1 | -1): void {
    if (job.durable !== undefined) this.durableQueued += by;
    const n = (this.owners.get(job.owner) ?? 0) + by;
    if (n === 0 && this.owners.size > KEEP_IDLE_OWNERS) this.owners.delete(job.owner);
    else this.owners.set(job.owner, n);
  }

  private leave(job: MailJob): void {
    job.place = 'out';
  }

  private unhold(job: MailJob): void {
    const held = job.holder === undefined ? undefined : this.holdings.get(job.holder);
    const i = held === undefined ? -1 : held.indexOf(job);
    if (held === undefined || i < 0) throw new Error(`job ${job.id} is not held by ${job.holder ?? 'any connection'}`);
    held.splice(i, 1);
    this.heldTotal--;
    job.holder = undefined;
  }
}
