// The Redis outbox's queue engine: BullMQ. A job holds a message's text and
// envelope, its schedule (delayed until send_at or its next attempt) and,
// while this replica sends it, this replica's lease (a lock of
// OUTBOX_LEASE_SECONDS, extended while held). A replica that dies
// mid-send loses its locks; BullMQ's stalled check gives the job back, and
// another replica claims it. The job goes when the message is final, its
// text with it. Jobs are fetched by hand (getNextJob): the supervisor
// claims when its connections have room. Lanes and callers' turns are
// queues and priorities (add, next; outbox-turns.ts).
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { Envelope } from '../mail/envelope.js';
import { BULK_LANE, isLane, NORMAL_LANE, type Lane } from '../mail/lane.js';
import type { RedisLink } from './client.js';
import { OutboxTurns } from './outbox-turns.js';

export interface JobData {
  readonly id: string;
  readonly caller: string;
  /** absent in jobs queued before lanes: the caller, NORMAL */
  readonly owner?: string;
  readonly lane?: number;
  readonly envelope: Envelope;
  readonly raw: string;
  readonly acceptedAt: number;
  readonly expiresAt: number;
  /** in jobs queued before the trace context moved to the job's telemetry option: the traceparent of its PRODUCER span */
  readonly trace?: string;
}

export interface Lease {
  readonly job: Job<JobData>;
  readonly token: string;
  /** the part whose worker took it (its lock is that worker's to extend) */
  readonly part: Part;
}

/** One BullMQ queue and the worker that takes its jobs by hand. */
interface Part {
  readonly queue: Queue;
  readonly worker: Worker;
}

/** BullMQ's priorities go to 2^21: HIGH's turns are the first million, NORMAL's the next (outbox-turns.ts) */
const TURNS_PER_LANE = 1_000_000;
/** a whole job owed, give or take the sum's rounding */
const OWED = 1 - 1e-6;
/** once the bulk queue was found empty, claims do not look there first for this long */
const BULK_EMPTY_MS = 500;
/** the counts of turns are cleared at most this often, when the queues are empty */
const CLEAR_MS = 60_000;

/** The priority of a job of `lane` at `turn`: lane by lane, turns within it. */
export function priorityOf(lane: Lane, turn: number): number {
  const within = Math.min(Math.max(1, turn), TURNS_PER_LANE);
  return lane === NORMAL_LANE ? TURNS_PER_LANE + within : within;
}

export class OutboxQueue {
  /** HIGH and NORMAL (and what was queued before BULK had a queue of its own) */
  private main: Part | undefined;
  private bulk: Part | undefined;
  private readonly connections: Redis[] = [];
  /** the jobs this replica holds (claimed, outcome not yet recorded), with their lock tokens */
  private readonly leases = new Map<string, Lease>();
  private extender: NodeJS.Timeout | undefined;
  readonly turns: OutboxTurns;
  /** a whole job or more: bulk's next claim comes first */
  private bulkCredit = 0;
  /** what bulk earns on every other job claimed */
  private readonly earn: number;
  private bulkEmptyUntil = 0;
  private clearedAt = 0;

  constructor(
    private readonly link: RedisLink,
    private readonly leaseMs: number,
    /** LANE_BULK_MIN_SHARE: while bulk has work, at least this share of what this replica claims */
    bulkShare: number,
    private readonly log: Logger,
  ) {
    this.turns = new OutboxTurns(link);
    this.earn = bulkShare >= 1 ? Infinity : bulkShare / (1 - bulkShare);
  }

  async open(): Promise<void> {
    const prefix = this.link.key('bull');
    // BullMQ's own connections: they reconnect as the link does; its workers' must wait for Redis rather than fail (BullMQ's rule).
    const connect = (blocking: boolean): Redis => {
      const c = this.link.client.duplicate(blocking ? { enableOfflineQueue: true, maxRetriesPerRequest: null } : {});
      c.on('error', () => undefined);
      this.connections.push(c);
      return c;
    };
    const part = (name: string): Part => {
      const queue = new Queue(name, { connection: connect(false), prefix });
      const worker = new Worker(name, null, { connection: connect(true), prefix, autorun: false, lockDuration: this.leaseMs, stalledInterval: Math.min(this.leaseMs, 30_000), maxStalledCount: 1_000_000 });
      // Outages are the link's to report (and health's to show); BullMQ would print them to stderr unheard.
      queue.on('error', (err) => this.log.debug('outbox: queue error', { queue: name, reason: err.message }));
      worker.on('error', (err) => this.log.debug('outbox: queue worker error', { queue: name, reason: err.message }));
      void worker.startStalledCheckTimer();
      return { queue, worker };
    };
    this.main = part('outbox');
    this.bulk = part('outbox-bulk');
    this.extender = setInterval(() => void this.extendLeases(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.extender.unref();
    await Promise.all([this.main.queue.waitUntilReady(), this.bulk.queue.waitUntilReady()]);
  }

  /**
   * Lanes: BULK has a queue of its own, HIGH and NORMAL share one, HIGH's
   * priorities before NORMAL's; within a lane a job's priority is its
   * owner's turn, as the intake counted it (outbox-turns.ts).
   */
  async add(jobs: readonly { readonly member: string; readonly data: JobData; readonly delay: number; readonly lane: Lane; readonly turn: number; readonly trace: string | undefined }[]): Promise<void> {
    if (jobs.length === 0) return;
    const { main, bulk } = this.parts();
    const entries = jobs.map(({ member, data, delay, lane, turn, trace }) => ({
      lane,
      job: { name: 'message', data, opts: { jobId: member, delay, priority: priorityOf(lane, turn), removeOnComplete: true, removeOnFail: true, ...(trace !== undefined ? { telemetry: { metadata: traceMetadata(trace) } } : {}) } },
    }));
    const ofBulk = entries.filter((e) => e.lane === BULK_LANE).map((e) => e.job);
    const others = entries.filter((e) => e.lane !== BULK_LANE).map((e) => e.job);
    if (others.length > 0) await main.queue.addBulk(others);
    if (ofBulk.length > 0) await bulk.queue.addBulk(ofBulk);
  }

  /**
   * The next job due, now this replica's until it lets go; undefined when
   * none is. HIGH and NORMAL first, but while bulk has work it earns a
   * credit on every other job claimed, and a whole one owed comes first.
   */
  async next(): Promise<Lease | undefined> {
    const { main, bulk } = this.parts();
    const token = randomUUID();
    const now = Date.now();
    const order = this.bulkCredit >= OWED && now >= this.bulkEmptyUntil ? [bulk, main] : [main, bulk];
    for (const part of order) {
      const job = (await part.worker.getNextJob(token, { block: false })) as Job<JobData> | undefined;
      if (job === undefined) {
        if (part === bulk) {
          this.bulkEmptyUntil = now + BULK_EMPTY_MS;
          this.bulkCredit = 0;
        }
        continue;
      }
      if (part === bulk) this.bulkCredit = Math.max(0, this.bulkCredit - 1);
      else if (now >= this.bulkEmptyUntil) this.bulkCredit = Math.min(1, this.bulkCredit + this.earn);
      // Its first claim: it no longer waits, and its owner's later messages move up a turn.
      if (job.attemptsStarted <= 1) this.turns.done(laneOf(job.data), ownerOf(job.data));
      const lease = { job, token, part };
      this.leases.set(job.data.id, lease);
      return lease;
    }
    await this.clearTurnsIfIdle(now);
    return undefined;
  }

  holds(id: string): Lease | undefined {
    return this.leases.get(id);
  }

  /**
   * Lets go of a job: final (it and its text go), due again now, or at a
   * time. A job no longer in this replica's hands (its lease ran out and
   * another took it, or a failover lost the lock) is another's business:
   * nothing to do.
   */
  async settle(lease: Lease, when: 'final' | 'now' | number): Promise<void> {
    this.leases.delete(lease.job.data.id);
    try {
      if (when === 'final') await lease.job.moveToCompleted('', lease.token, false);
      else if (when === 'now') await lease.job.moveToWait(lease.token);
      else await lease.job.moveToDelayed(when, lease.token);
    } catch (err) {
      if (!isLostLease(err)) throw err;
    }
  }

  /** The message is final: its job (and text) go. */
  finish(lease: Lease): Promise<void> {
    return this.settle(lease, 'final');
  }

  /** Removes a job no replica holds (a cancel, an expiry); false when a replica holds it (it is SENDING). */
  async remove(member: string): Promise<boolean> {
    const job = await this.find(member);
    if (job === undefined) return true;
    try {
      await job.remove();
    } catch {
      return false;
    }
    if (job.attemptsStarted === 0) this.turns.done(laneOf(job.data), ownerOf(job.data));
    return true;
  }

  /** Jobs due now and not yet taken, at most `limit`, HIGH and NORMAL before BULK. */
  async waiting(limit: number): Promise<Job<JobData>[]> {
    const jobs: Job<JobData>[] = [];
    for (const { queue } of Object.values(this.parts())) {
      if (jobs.length >= limit) break;
      // Jobs with a priority wait in BullMQ's prioritized set, not its wait list.
      jobs.push(...((await queue.getJobs(['prioritized', 'waiting'], 0, limit - jobs.length - 1, true)) as Job<JobData>[]));
    }
    return jobs.slice(0, limit);
  }

  /** A delayed job is due now. */
  async promote(member: string): Promise<void> {
    const job = await this.find(member);
    if (job !== undefined && (await job.getState()) === 'delayed') await job.promote().catch(() => undefined);
  }

  /** Redis lost what this replica held (it came back empty): the leases are gone with it. */
  forgetHeld(): void {
    this.leases.clear();
  }

  async close(): Promise<void> {
    clearInterval(this.extender);
    for (const part of [this.main, this.bulk]) {
      await part?.worker.close(true).catch(() => undefined);
      await part?.queue.close().catch(() => undefined);
    }
    for (const c of this.connections.splice(0)) await c.quit().catch(() => c.disconnect());
    this.main = undefined;
    this.bulk = undefined;
  }

  /** The leases on what this replica holds run on while it holds them. */
  private async extendLeases(): Promise<void> {
    if (this.leases.size === 0) return;
    const byPart = new Map<Part, { ids: string[]; tokens: string[] }>();
    for (const { job, token, part } of this.leases.values()) {
      if (job.id === undefined) continue;
      const held = byPart.get(part) ?? { ids: [], tokens: [] };
      held.ids.push(job.id);
      held.tokens.push(token);
      byPart.set(part, held);
    }
    for (const [part, { ids, tokens }] of byPart) {
      await part.worker.extendJobLocks(ids, tokens, this.leaseMs).catch((err: unknown) => this.log.warn('outbox: leases not extended', { reason: (err as Error).message }));
    }
  }

  /** A job by its id, in whichever queue holds it. */
  private async find(member: string): Promise<Job<JobData> | undefined> {
    const { main, bulk } = this.parts();
    return ((await main.queue.getJob(member)) ?? (await bulk.queue.getJob(member))) as Job<JobData> | undefined;
  }

  /** Nothing due in either queue: if nothing waits or is delayed either, every count of turns is zero. */
  private async clearTurnsIfIdle(now: number): Promise<void> {
    if (now - this.clearedAt < CLEAR_MS) return;
    this.clearedAt = now;
    const keys = Object.values(this.parts()).flatMap(({ queue }) => [queue.keys.wait, queue.keys.prioritized, queue.keys.paused, queue.keys.delayed].filter((k): k is string => k !== undefined));
    await this.turns.clearIfIdle(keys).catch(() => undefined);
  }

  private parts(): { main: Part; bulk: Part } {
    if (this.main === undefined || this.bulk === undefined) throw closed();
    return { main: this.main, bulk: this.bulk };
  }
}

/**
 * The trace context of a message's PRODUCER span in BullMQ's telemetry job
 * option, as bullmq-otel writes it (the propagation carrier as JSON): one
 * per job, where BullMQ's own telemetry would give every job of a bulk add
 * the same one.
 */
function traceMetadata(traceparent: string): string {
  return JSON.stringify({ traceparent });
}

/** The traceparent a job carries (its telemetry option, or its data when queued before that), if any. */
export function traceOf(job: Job<JobData>): string | undefined {
  const metadata = job.opts.telemetry?.metadata;
  if (metadata === undefined) return job.data.trace;
  try {
    const { traceparent } = JSON.parse(metadata) as { traceparent?: unknown };
    return typeof traceparent === 'string' ? traceparent : undefined;
  } catch {
    return undefined;
  }
}

/** The owner whose turns a job takes (the caller, for jobs queued before owners). */
export function ownerOf(data: JobData): string {
  return data.owner ?? data.caller;
}

/** A job's lane (NORMAL for one queued before lanes). */
export function laneOf(data: JobData): Lane {
  const lane = data.lane ?? NORMAL_LANE;
  return isLane(lane) ? lane : NORMAL_LANE;
}

/** BullMQ's word for a job this replica no longer holds (codes -1 to -6 of its move scripts). */
function isLostLease(err: unknown): boolean {
  return err instanceof Error && /^(Missing lock for job|Missing key for job|Lock mismatch for job|Job \S+ is not in the )/.test(err.message);
}

function closed(): MailroomError {
  return new MailroomError('ESTORE', 'the outbox is closed');
}
