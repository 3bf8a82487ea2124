// A job is one message on its way through the supervisor. It is settled
// exactly once, whoever gets there first: connection, deadline or shutdown.
import type { MailroomError, SmtpReply } from '../errors.js';
import type { OutgoingMessage } from './compose.js';
import { HIGH_LANE, type Lane } from './lane.js';
import { jobTrace, traceEnded, type JobTrace } from '../lib/tracing.js';

export interface Delivered {
  readonly messageId: string;
  readonly reply: SmtpReply;
  /** delivery attempts it took, 1 when the first one succeeded */
  readonly attempts: number;
}

/**
 * Where a job is (src/actors/job-ledger.ts writes it): on its way to the
 * supervisor, queued, waiting out a retry backoff, held by a connection,
 * or out of the supervisor's hands for good.
 */
export type JobPlace = 'new' | 'queued' | 'retrying' | 'held' | 'out';

/** A job that comes from the outbox: no caller waits on it; its outcome goes to the store. */
export interface DurableJob {
  /** epoch ms: it fails EEXPIRED from then on */
  readonly expiresAt: number;
}

export interface MailJob {
  /** for log lines: unique within this process (the Message-ID is the lasting name) */
  readonly id: string;
  readonly message: OutgoingMessage;
  /** epoch ms after which the caller no longer waits; Infinity for none */
  readonly deadline: number;
  /** epoch ms when the job entered the queue */
  readonly enqueuedAt: number;
  /** who asked for it ('' when callers are not authenticated), for log lines */
  readonly caller: string;
  /** where it waits its turn (lane.ts) */
  readonly lane: Lane;
  /** whose turn it is when it goes: the caller's name, else the address it called from (callers take turns within a lane) */
  readonly owner: string;
  place: JobPlace;
  /** the connection that holds it, while `place` is 'held' */
  holder: string | undefined;
  /**
   * Deliveries the relay took part in, counted once by the connection that
   * handed the message over, when it reports the outcome. A connection that
   * was gone before the relay answered MAIL (ESTALE) counts none.
   */
  attempts: number;
  /** times it came back for free because its connection had gone stale (bounded) */
  staleRequeues: number;
  /** connection of the last failed attempt, avoided on retry when another is idle */
  lastCid: string | undefined;
  /** set for a message from the outbox (its Message-ID is its record's id) */
  readonly durable: DurableJob | undefined;
  /** its spans, with tracing on (lib/tracing.ts) */
  readonly trace: JobTrace | undefined;
  readonly settled: () => boolean;
  readonly resolve: (result: Delivered) => void;
  readonly reject: (error: MailroomError) => void;
}

let jobs = 0;

/** What a job is besides its message: who waits for it and until when, and its turn. */
export interface JobOptions {
  /** epoch ms after which the caller no longer waits; Infinity for none */
  readonly deadline: number;
  readonly caller?: string;
  /** default: the caller */
  readonly owner?: string;
  /** default: HIGH (a caller waits) */
  readonly lane?: Lane;
  readonly durable?: DurableJob;
  /** default: under the active span, with tracing on */
  readonly trace?: JobTrace | undefined;
}

export function createJob(message: OutgoingMessage, options: JobOptions): { job: MailJob; done: Promise<Delivered> } {
  const { deadline, caller = '', durable } = options;
  let settled = false;
  let resolveP!: (r: Delivered) => void;
  let rejectP!: (e: MailroomError) => void;
  const done = new Promise<Delivered>((res, rej) => {
    resolveP = res;
    rejectP = rej;
  });
  const trace = options.trace ?? jobTrace();
  const job: MailJob = {
    id: (++jobs).toString(36),
    message,
    deadline,
    enqueuedAt: Date.now(),
    caller,
    lane: options.lane ?? HIGH_LANE,
    owner: options.owner ?? caller,
    place: 'new',
    holder: undefined,
    attempts: 0,
    staleRequeues: 0,
    lastCid: undefined,
    durable,
    trace,
    settled: () => settled,
    resolve: (r) => {
      if (settled) return;
      settled = true;
      traceEnded(trace);
      resolveP(r);
    },
    reject: (e) => {
      if (settled) return;
      settled = true;
      traceEnded(trace, e.code);
      rejectP(e);
    },
  };
  return { job, done };
}

/**
 * Whether the job may still be called off without a trace: it never reached
 * a connection that could have handed it to the relay. Once it did, its
 * outcome stands, so that an idempotent retry sees the truth.
 */
export function cancellable(job: MailJob): boolean {
  return job.attempts === 0 && job.place !== 'held';
}
