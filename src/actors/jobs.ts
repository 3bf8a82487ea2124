// What the supervisor does at each turn of a job's story: a job is
// submitted, handed to a connection, and reported delivered, failed, or
// given back. A job a caller waits on (SendMail, a code mail) is answered,
// and its attempts are counted here; a job from the outbox has its outcome
// recorded instead (the store counts its attempts, and a transient failure
// defers it for minutes rather than retrying it at once). The supervisor's
// machine (supervisor.ts) decides when each runs.
import { MailroomError } from '../errors.js';
import { backoffDelay } from '../lib/backoff.js';
import type { MailJob } from '../mail/job.js';
import type { Change } from '../outbox/store.js';
import { formatReply } from '../smtp/reply.js';
import { traceAttempt, traceEnded, traceQueued } from '../lib/tracing.js';
import { fail } from './dispatch.js';
import type { SupervisorContext } from './supervisor-context.js';
import type { ConnectionReport } from './smtp-connection.js';

type Delivered = Extract<ConnectionReport, { type: 'conn.delivered' }>;
type Failed = Extract<ConnectionReport, { type: 'conn.failed' }>;

/** What a turn of the story may need beyond the context: an outcome recorded, a retry some time from now. */
export interface JobEffects {
  record(change: Change): void;
  retryIn(job: MailJob, ms: number): void;
  /** an outbox job's attempt ended (error: how; deferred when it is transient) */
  attempted?(job: MailJob, error: MailroomError | undefined): void;
}

export function admit(context: SupervisorContext, jobs: readonly MailJob[]): void {
  const { ledger, options } = context;
  for (const job of jobs) {
    if (ledger.queued >= options.queueLimit) {
      job.reject(new MailroomError('EQUEUEFULL', `the send queue is full (${options.queueLimit} waiting)`, { retryAfterSeconds: 1 }));
    } else if (ledger.queuedOf(job.owner) >= options.queueLimitPerCaller) {
      job.reject(new MailroomError('EQUEUEFULL', `this caller's share of the send queue is full (${options.queueLimitPerCaller} waiting, QUEUE_LIMIT_PER_CALLER)`, { retryAfterSeconds: 1 }));
    } else {
      ledger.admit(job);
      traceQueued(job.trace);
    }
  }
}

/** A connection lost its session before the relay saw any of the job: it goes back at no cost, a bounded number of times. */
export function isStale(context: SupervisorContext, report: Failed): boolean {
  return report.error.code === 'ESTALE' && report.job.staleRequeues < context.options.maxAttempts;
}

/**
 * The relay took part in this attempt (it answered MAIL at least): a
 * caller's job counts it. One the session lost before that (ESTALE) is no
 * attempt. An outbox job's attempts are its record's, counted by the store.
 */
export function countAttempt(report: Delivered | Failed): void {
  if (report.job.durable === undefined && (report.type === 'conn.delivered' || report.error.code !== 'ESTALE')) report.job.attempts += 1;
}

/** A caller's job worth another attempt now (an outbox job is deferred instead). */
export function isWorthRetrying(context: SupervisorContext, report: Failed): boolean {
  const { job, error } = report;
  return job.durable === undefined && error.transient && error.code !== 'ESTALE' && job.attempts < context.options.maxAttempts && !job.settled();
}

export function delivered(context: SupervisorContext, report: Delivered, effects: JobEffects): void {
  const { job, reply, cid } = report;
  countAttempt(report);
  context.ledger.release(job);
  traceAttempt(job.trace, { code: reply.code });
  traceEnded(job.trace);
  if (job.durable !== undefined) {
    effects.record({ id: job.message.messageId, event: 'DELIVERED', at: context.now(), attempted: true, response: formatReply(reply), connection: cid });
    effects.attempted?.(job, undefined);
  } else {
    // A 250 is the truth even for a job the shutdown deadline already failed.
    job.resolve({ messageId: job.message.messageId, reply, attempts: job.attempts });
  }
  context.log.debug('delivered', { jobId: job.id, caller: job.caller || undefined, cid, attempts: job.attempts });
}

/**
 * The relay asked us to slow down: the pace drops (relay-pace.ts), and the
 * job goes back to the front of its lane at no cost. Not an attempt, and
 * never a failure: a caller's job still has its deadline and
 * QUEUE_TIMEOUT_MS, an outbox job its expiry.
 */
export function slowedDown(context: SupervisorContext, report: Failed): void {
  const { job, cid, error } = report;
  job.lastCid = cid;
  context.ledger.giveBack(job);
  traceAttempt(job.trace, { code: error.smtp?.code, error: error.code });
  traceQueued(job.trace);
  if (context.pace.slowDown(Date.now())) context.log.warn('the relay asked us to slow down', { cid, reply: error.smtp && formatReply(error.smtp), perSecond: context.pace.perSecond });
}

export function requeueStale(context: SupervisorContext, report: Failed): void {
  const { job, cid } = report;
  // Not an attempt: the relay saw nothing. The connection that went stale backs off on its own.
  job.staleRequeues += 1;
  job.lastCid = cid;
  context.ledger.giveBack(job);
  traceAttempt(job.trace, { error: report.error.code });
  traceQueued(job.trace);
  context.log.debug('requeued from a stale connection', { jobId: job.id, cid, requeues: job.staleRequeues });
}

export function scheduleRetry(context: SupervisorContext, report: Failed, effects: JobEffects): void {
  const { job, error, cid } = report;
  const { backoffBaseMs, backoffMaxMs } = context.options.connection;
  const delay = backoffDelay(job.attempts, backoffBaseMs, backoffMaxMs);
  job.lastCid = cid;
  context.ledger.deferRetry(job);
  traceAttempt(job.trace, { code: error.smtp?.code, error: error.code });
  traceQueued(job.trace);
  context.log.info('retrying', { jobId: job.id, caller: job.caller || undefined, cid, attempt: job.attempts, code: error.code, delayMs: delay });
  effects.retryIn(job, delay);
}

/** A failure that ends the job for its caller, or, from the outbox, defers or fails its message. */
export function endOrDefer(context: SupervisorContext, report: Failed, effects: JobEffects): void {
  const { job, error, cid } = report;
  context.ledger.release(job);
  traceAttempt(job.trace, { code: error.smtp?.code, error: error.code });
  traceEnded(job.trace, error.code);
  const reply = error.smtp && formatReply(error.smtp);
  if (job.durable === undefined) {
    context.log.info('failed', { jobId: job.id, caller: job.caller || undefined, cid, attempts: job.attempts, code: error.code, reply });
    job.reject(error);
    return;
  }
  const base = { id: job.message.messageId, at: context.now(), attempted: error.code !== 'ESTALE', response: reply ?? error.message, errorCode: error.code, connection: cid };
  if (error.code !== 'ESTALE') effects.attempted?.(job, error);
  if (!error.transient) {
    effects.record({ ...base, event: 'FAIL' });
    return;
  }
  // When it goes again is the store's to say, from the attempts it counted.
  effects.record({ ...base, event: 'DEFER' });
  context.log.info('deferred', { jobId: job.id, cid, code: error.code });
}

/** Jobs given back untouched go to the front of the line. */
export function takeBack(context: SupervisorContext, jobs: readonly MailJob[]): void {
  for (const job of jobs) {
    context.ledger.giveBack(job);
    traceQueued(job.trace);
  }
}

/**
 * Jobs nothing will carry now (the service stops, the relay is gone): a
 * caller's fails with `why` (the relay's error, or ESHUTDOWN), an outbox
 * job goes back to QUEUED, for later or the next start. Returns those
 * changes. A job still held by a connection (it is gone) leaves the ledger.
 */
export function returnOrFail(context: SupervisorContext, jobs: readonly MailJob[], why: string | MailroomError): Change[] {
  const at = context.now();
  const released: Change[] = [];
  for (const job of jobs) {
    if (job.place === 'held') context.ledger.release(job);
    traceEnded(job.trace, typeof why === 'string' ? 'ESHUTDOWN' : why.code);
    if (job.durable !== undefined) released.push({ id: job.message.messageId, event: 'RELEASE', at });
    else if (typeof why === 'string') fail(job, 'ESHUTDOWN', why);
    else job.reject(why);
  }
  return released;
}
