// Where every mail job the supervisor took in is, until it is settled.
//
// Invariant: an unsettled job is in exactly one place: queued (waiting for
// a connection), waiting out a retry backoff, or held by one connection. Its
// `place` says which, and only this module writes it. A job settled while
// queued (its caller gave up) stays queued until dispatch or the sweep
// passes it, and then it is out.
//
// The queue has two lanes. Jobs that come back (from a connection that lost
// its session before the relay saw them, or at the end of a retry backoff)
// go ahead of those that never left, in the order they came back: FIFO for
// everyone, and a job that was already under way is not overtaken.
//
// TRAP: holdings are one array per connection for the connection's life,
// not a Map or Set keyed by job: a table that gains and loses an entry every
// mail leaves copies in old space that keep finished jobs alive until the
// next full GC (docs/decisions.md). Retries are rare enough for a Set.
import { Deque } from '../lib/deque.js';
import type { MailJob } from '../mail/job.js';

export class JobLedger {
  private readonly back = new Deque<MailJob>();
  private readonly fresh = new Deque<MailJob>();
  private readonly retrying = new Set<MailJob>();
  private readonly holdings = new Map<string, MailJob[]>();
  private heldTotal = 0;
  private durableQueued = 0;

  /** jobs waiting for a connection, both lanes */
  get queued(): number {
    return this.back.length + this.fresh.length;
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

  /** A new job joins the end of the queue. */
  admit(job: MailJob): void {
    this.enqueue(job, this.fresh);
  }

  /** The job dispatch would take next. */
  peek(): MailJob | undefined {
    return this.back.length > 0 ? this.back.peek() : this.fresh.peek();
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

  /** Its connection gave it back before the relay saw it: to the returning lane. */
  giveBack(job: MailJob): void {
    this.unhold(job);
    this.enqueue(job, this.back);
  }

  /** Its connection reported a failure worth retrying: it waits out a backoff. */
  deferRetry(job: MailJob): void {
    this.unhold(job);
    job.place = 'retrying';
    this.retrying.add(job);
  }

  /** Its backoff is over: to the returning lane. False when it was failed meanwhile (shutdown). */
  retryDue(job: MailJob): boolean {
    if (!this.retrying.delete(job)) return false;
    this.enqueue(job, this.back);
    return true;
  }

  /** The jobs a connection whose actor died held (it can report nothing): to the returning lane, oldest first. */
  reclaim(cid: string): void {
    for (const job of this.forfeit(cid)) this.enqueue(job, this.back);
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
    const removed = [...this.back.removeWhere(drop), ...this.fresh.removeWhere(drop)];
    for (const job of removed) {
      if (job.durable !== undefined) this.durableQueued--;
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

  private enqueue(job: MailJob, lane: Deque<MailJob>): void {
    job.place = 'queued';
    if (job.durable !== undefined) this.durableQueued++;
    lane.push(job);
  }

  /** The head of the queue, out of it. */
  private dequeue(): MailJob | undefined {
    const job = this.back.length > 0 ? this.back.shift() : this.fresh.shift();
    if (job?.durable !== undefined) this.durableQueued--;
    return job;
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
