// The Redis outbox's queue engine: BullMQ. A job holds a message's text and
// envelope, its schedule (delayed until send_at or its next attempt) and,
// while this replica sends it, this replica's lease (a lock of
// OUTBOX_LEASE_SECONDS, extended while held). A replica that dies
// mid-send loses its locks; BullMQ's stalled check gives the job back, and
// another replica claims it. The job goes when the message is final, its
// text with it. Jobs are fetched by hand (getNextJob): the supervisor
// claims when its connections have room.
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { Envelope } from '../mail/envelope.js';
import type { Lane } from '../mail/lane.js';
import type { RedisLink } from './client.js';

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
  /** with tracing on: the traceparent of its PRODUCER span (lib/tracing.ts) */
  readonly trace?: string;
}

export interface Lease {
  readonly job: Job<JobData>;
  readonly token: string;
}

export class OutboxQueue {
  private queue: Queue | undefined;
  private worker: Worker | undefined;
  private readonly connections: Redis[] = [];
  /** the jobs this replica holds (claimed, outcome not yet recorded), with their lock tokens */
  private readonly leases = new Map<string, Lease>();
  private extender: NodeJS.Timeout | undefined;

  constructor(
    private readonly link: RedisLink,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  async open(): Promise<void> {
    const prefix = this.link.key('bull');
    // BullMQ's own connections: they reconnect as the link does; its worker's must wait for Redis rather than fail (BullMQ's rule).
    const connect = (blocking: boolean): Redis => {
      const c = this.link.client.duplicate(blocking ? { enableOfflineQueue: true, maxRetriesPerRequest: null } : {});
      c.on('error', () => undefined);
      this.connections.push(c);
      return c;
    };
    this.queue = new Queue('outbox', { connection: connect(false), prefix });
    this.worker = new Worker('outbox', null, { connection: connect(true), prefix, autorun: false, lockDuration: this.leaseMs, stalledInterval: Math.min(this.leaseMs, 30_000), maxStalledCount: 1_000_000 });
    // Outages are the link's to report (and health's to show); BullMQ would print them to stderr unheard.
    this.queue.on('error', (err) => this.log.debug('outbox: queue error', { reason: err.message }));
    this.worker.on('error', (err) => this.log.debug('outbox: queue worker error', { reason: err.message }));
    void this.worker.startStalledCheckTimer();
    this.extender = setInterval(() => void this.extendLeases(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.extender.unref();
    await this.queue.waitUntilReady();
  }

  /**
   * A job's lane is its BullMQ priority (HIGH 1, NORMAL 2, BULK 3): the
   * next job due is of the highest lane. Owners do not take turns here, and
   * BULK is owed no share: BullMQ's open-source queue has no groups (see
   * docs/operating.md).
   */
  async add(jobs: readonly { readonly member: string; readonly data: JobData; readonly delay: number; readonly lane: Lane }[]): Promise<void> {
    if (jobs.length === 0) return;
    await this.queueOrThrow().addBulk(jobs.map(({ member, data, delay, lane }) => ({ name: 'message', data, opts: { jobId: member, delay, priority: Math.max(1, lane), removeOnComplete: true, removeOnFail: true } })));
  }

  /** The next job due, now this replica's until it lets go; undefined when none is. */
  async next(): Promise<Lease | undefined> {
    const worker = this.worker;
    if (worker === undefined) throw closed();
    const token = randomUUID();
    const job = (await worker.getNextJob(token, { block: false })) as Job<JobData> | undefined;
    if (job === undefined) return undefined;
    const lease = { job, token };
    this.leases.set(job.data.id, lease);
    return lease;
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
    const job = await this.queueOrThrow().getJob(member);
    if (job === undefined) return true;
    try {
      await job.remove();
      return true;
    } catch {
      return false;
    }
  }

  /** Jobs due now and not yet taken, oldest first, at most `limit`. */
  async waiting(limit: number): Promise<Job<JobData>[]> {
    return (await this.queueOrThrow().getWaiting(0, limit - 1)) as Job<JobData>[];
  }

  /** A delayed job is due now. */
  async promote(member: string): Promise<void> {
    const job = await this.queueOrThrow().getJob(member);
    if (job !== undefined && (await job.getState()) === 'delayed') await job.promote().catch(() => undefined);
  }

  /** Redis lost what this replica held (it came back empty): the leases are gone with it. */
  forgetHeld(): void {
    this.leases.clear();
  }

  async close(): Promise<void> {
    clearInterval(this.extender);
    await this.worker?.close(true).catch(() => undefined);
    await this.queue?.close().catch(() => undefined);
    for (const c of this.connections.splice(0)) await c.quit().catch(() => c.disconnect());
    this.worker = undefined;
    this.queue = undefined;
  }

  /** The leases on what this replica holds run on while it holds them. */
  private async extendLeases(): Promise<void> {
    if (this.worker === undefined || this.leases.size === 0) return;
    const ids: string[] = [];
    const tokens: string[] = [];
    for (const { job, token } of this.leases.values()) {
      if (job.id === undefined) continue;
      ids.push(job.id);
      tokens.push(token);
    }
    await this.worker.extendJobLocks(ids, tokens, this.leaseMs).catch((err: unknown) => this.log.warn('outbox: leases not extended', { reason: (err as Error).message }));
  }

  private queueOrThrow(): Queue {
    if (this.queue === undefined) throw closed();
    return this.queue;
  }
}

/** BullMQ's word for a job this replica no longer holds (codes -1 to -6 of its move scripts). */
function isLostLease(err: unknown): boolean {
  return err instanceof Error && /^(Missing lock for job|Missing key for job|Lock mismatch for job|Job \S+ is not in the )/.test(err.message);
}

function closed(): MailroomError {
  return new MailroomError('ESTORE', 'the outbox is closed');
}
