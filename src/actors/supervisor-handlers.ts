// What the supervisor does with each event in its mailbox: hand queued jobs
// to connections (and a next job to busy ones), take jobs back from
// connections that failed or went down, retry or fail them, and keep the
// pool's health in the log. Plain functions over the supervisor's context;
// the machine in supervisor.ts decides which runs when.
import type { Observable } from 'rxjs';
import type { Logger } from 'winston';
import { MailroomError, type ErrorCode } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import type { Deque } from '../mail/deque.js';
import type { TokenBucket } from '../mail/token-bucket.js';
import { formatReply } from '../smtp/reply.js';
import { backoffDelay } from './backoff.js';
import type { JobSlots } from './job-slots.js';
import type { ConnectionEvent, ConnectionOptions, SmtpConnectionActor } from './smtp-connection.js';
import type { SupervisorEmitted, SupervisorEvent, SupervisorOptions } from './supervisor.js';

/** What xstate sends a parent when a child actor fails: `xstate.error.actor.<id>`. */
export interface ChildError {
  readonly type: string;
  readonly error: unknown;
}
const CHILD_ERROR = 'xstate.error.actor.';

export interface SupervisorContext {
  readonly options: SupervisorOptions;
  readonly log: Logger;
  readonly jobs$: Observable<MailJob>;
  readonly connections: Map<string, SmtpConnectionActor>;
  /** authenticated connections with nothing to do, longest idle first */
  readonly idle: string[];
  readonly up: Set<string>;
  readonly closed: Set<string>;
  readonly queue: Deque<MailJob>;
  /** cid → the job that connection is sending */
  readonly inflight: JobSlots;
  /**
   * cid → the job that connection sends right after its inflight one (its
   * envelope pipelined behind that one's final dot). Given only when no
   * connection is idle, so a busy connection never waits on this actor
   * between messages.
   */
  readonly next: JobSlots;
  /** busy connections that refused a next job, until they are idle or down again */
  readonly noNext: Set<string>;
  /** jobs waiting out a retry backoff: in neither queue nor inflight */
  readonly retrying: Set<MailJob>;
  readonly bucket: TokenBucket | undefined;
  /** why a connection last went down: the reason given to jobs that time out in the queue */
  lastDownError: MailroomError | undefined;
  tickScheduled: boolean;
  shutdownTimeoutMs: number;
  /** until a first connection authenticates: the failure last logged, logged again only when it changes */
  unreachableCode: ErrorCode | undefined;
  /** whether any connection ever came up; after that, health changes speak for the pool */
  reachedOnce: boolean;
  /** per connection: crashes so far, for the respawn backoff and the actor id */
  readonly crashes: Map<string, number>;
}

/** The effects dispatch needs, as xstate's enqueueActions offers them. */
interface Enqueue {
  raise(event: SupervisorEvent, options: { delay: number }): void;
  sendTo(ref: SmtpConnectionActor, event: ConnectionEvent): void;
  emit(event: SupervisorEmitted): void;
}
type Report<T extends SupervisorEvent['type']> = Extract<SupervisorEvent, { type: T }>;

export function fail(job: MailJob, code: ErrorCode, message: string, cause?: MailroomError): void {
  job.reject(new MailroomError(code, message, { cause, smtp: cause?.smtp }));
}

/** Hands queued jobs to idle connections while both exist and the rate limit allows. */
export function dispatch(context: SupervisorContext, enqueue: Enqueue): void {
  const { queue, idle } = context;
  while (queue.length > 0 && idle.length > 0) {
    const job = queue.shift() as MailJob;
    if (job.settled()) continue; // caller cancelled while queued
    const now = Date.now();
    if (now >= job.deadline) {
      fail(job, 'EDEADLINE', 'deadline passed before a connection was free');
      continue;
    }
    if (context.bucket !== undefined) {
      const wait = context.bucket.take(now);
      if (wait > 0) {
        queue.unshift(job);
        if (!context.tickScheduled) {
          context.tickScheduled = true;
          enqueue.raise({ type: 'tick' }, { delay: wait });
        }
        return;
      }
    }
    // Prefer a connection other than the one this job just failed on.
    let index = 0;
    if (job.lastCid !== undefined && idle[0] === job.lastCid && idle.length > 1) index = 1;
    const cid = idle.splice(index, 1)[0] as string;
    job.attempts += 1;
    context.inflight.set(cid, job);
    enqueue.sendTo(context.connections.get(cid) as SmtpConnectionActor, { type: 'JOB', job });
  }
  if (idle.length === 0) dispatchNext(context, enqueue);
}

/**
 * With every connection busy, gives each one that has no next job the queue
 * head as its next. A job that went stale once waits for an idle connection
 * instead: a next job is the one a relay closing behind its 250 catches.
 */
function dispatchNext(context: SupervisorContext, enqueue: Enqueue): void {
  const { queue } = context;
  if (queue.length === 0 || context.bucket !== undefined) return;
  for (const cid of context.inflight.keys()) {
    if (context.next.has(cid) || context.noNext.has(cid)) continue;
    let job = queue.shift();
    while (job !== undefined && (job.settled() || Date.now() >= job.deadline)) {
      if (!job.settled()) fail(job, 'EDEADLINE', 'deadline passed before a connection was free');
      job = queue.shift();
    }
    if (job === undefined) return;
    if (job.staleRequeues > 0) {
      queue.unshift(job);
      return;
    }
    job.attempts += 1;
    context.next.set(cid, job);
    enqueue.sendTo(context.connections.get(cid) as SmtpConnectionActor, { type: 'JOB', job });
    if (queue.length === 0) return;
  }
}

/**
 * Pool health in the log, once per change and no more: info when the pool is
 * fully up, warn when a connection goes down (with the reason), error when
 * none is left. Recycling is routine and never passes through here.
 */
function healthChanged(context: SupervisorContext, enqueue: Enqueue, down?: { cid: string; error: MailroomError }): void {
  const up = context.up.size;
  const workers = context.options.workers;
  if (down !== undefined) {
    const fields = { cid: down.cid, up, workers, code: down.error.code, reason: down.error.message };
    if (up === 0) context.log.error('pool down: no SMTP connection is up', fields);
    else context.log.warn('SMTP connection down', fields);
  } else if (up === workers) {
    context.log.info('pool up', { up, workers });
  } else {
    context.log.debug('SMTP connection up', { up, workers });
  }
  enqueue.emit({ type: 'pool.health', up, workers });
}

/** Fails what waited too long; the queue bound keeps this O(queue) sweep cheap. */
export function sweepQueue(context: SupervisorContext): void {
  const now = Date.now();
  const { queueTimeoutMs } = context.options;
  const down = context.up.size === 0 ? context.lastDownError : undefined;
  for (const job of context.queue.removeWhere((j) => j.settled() || now >= j.deadline || now - j.enqueuedAt >= queueTimeoutMs)) {
    if (now >= job.deadline) fail(job, 'EDEADLINE', 'deadline passed while queued');
    else {
      const why = down === undefined ? '' : `: ${down.message}`;
      fail(job, 'EUNAVAILABLE', `no SMTP connection could take the message within ${queueTimeoutMs} ms${why}`, down);
    }
  }
}

/** Fails the jobs no connection holds: none of them has reached the relay. */
export function failWaiting(context: SupervisorContext, message: string): void {
  for (let job = context.queue.shift(); job !== undefined; job = context.queue.shift()) fail(job, 'ESHUTDOWN', message);
  for (const job of context.retrying) fail(job, 'ESHUTDOWN', message);
  context.retrying.clear();
}

export function refuseAll(jobs: readonly MailJob[]): void {
  for (const job of jobs) fail(job, 'ESHUTDOWN', 'the service is shutting down');
}

export function failEverything(context: SupervisorContext, message: string): void {
  failWaiting(context, message);
  for (const job of context.inflight.values()) fail(job, 'ESHUTDOWN', `${message}; the relay had not confirmed the message`);
  for (const job of context.next.values()) fail(job, 'ESHUTDOWN', `${message}; the relay had not confirmed the message`);
  context.inflight.clear();
  context.next.clear();
}

export function onReady(context: SupervisorContext, event: Report<'conn.ready'>, enqueue: Enqueue): void {
  if (context.inflight.has(event.cid)) return; // stale: it is busy
  context.noNext.delete(event.cid);
  if (!context.idle.includes(event.cid)) context.idle.push(event.cid);
  if (!context.up.has(event.cid)) {
    context.up.add(event.cid);
    context.reachedOnce = true;
    healthChanged(context, enqueue);
  }
  dispatch(context, enqueue);
}

/** Takes back the job a connection holds (sending or next), if it is still the one it was given. */
function takeBack(context: SupervisorContext, cid: string, job?: MailJob): MailJob | undefined {
  const held = context.inflight.get(cid);
  if (held === undefined || (job !== undefined && held !== job)) {
    const next = context.next.get(cid);
    if (job === undefined || next !== job) return undefined;
    context.next.delete(cid);
    return next;
  }
  context.inflight.delete(cid);
  return held;
}

/** A job that never reached the relay goes back to the queue head; its dispatch was no attempt. */
function returnToQueue(context: SupervisorContext, job: MailJob): void {
  job.attempts -= 1;
  context.queue.unshift(job);
}

/** The next job a connection held goes back to the queue head, if it held one. */
function returnNext(context: SupervisorContext, cid: string): void {
  const next = context.next.get(cid);
  if (next === undefined) return;
  context.next.delete(cid);
  returnToQueue(context, next);
}

/**
 * The connection finished its inflight job and goes straight on to its next
 * one: that is its inflight job now, and it may take another next.
 */
function promoteNext(context: SupervisorContext, cid: string, enqueue: Enqueue): void {
  const next = context.next.get(cid);
  if (next === undefined) return;
  context.next.delete(cid);
  context.inflight.set(cid, next);
  dispatchNext(context, enqueue);
}

export function onDown(context: SupervisorContext, event: Report<'conn.down'>, enqueue: Enqueue): void {
  const i = context.idle.indexOf(event.cid);
  if (i >= 0) context.idle.splice(i, 1);
  context.lastDownError = event.error;
  // A connection reports a job it started (conn.failed) before it goes down,
  // so a job still held here never reached the relay: back to the queue head.
  // If the connection also bounces it later, that bounce finds nothing to take.
  context.noNext.delete(event.cid);
  returnNext(context, event.cid);
  const job = takeBack(context, event.cid);
  if (job !== undefined) returnToQueue(context, job);
  if (context.up.delete(event.cid)) healthChanged(context, enqueue, { cid: event.cid, error: event.error });
  else if (!context.reachedOnce && event.error.code !== context.unreachableCode) {
    // A relay that was never reached (refused certificate or credentials,
    // wrong host) would otherwise show its reason only in debug lines.
    context.log.warn('cannot reach the SMTP relay', { code: event.error.code, reason: event.error.message });
  }
  if (!context.reachedOnce) context.unreachableCode = event.error.code;
  dispatch(context, enqueue);
}

export function onDelivered(context: SupervisorContext, event: Report<'conn.delivered'>, enqueue: Enqueue): void {
  if (context.inflight.get(event.cid) === event.job) {
    context.inflight.delete(event.cid);
    promoteNext(context, event.cid, enqueue);
  }
  // A 250 is the truth even for a job the shutdown deadline already failed.
  event.job.resolve({ messageId: event.job.message.messageId, reply: event.reply, attempts: event.job.attempts });
  context.log.debug('delivered', { jobId: event.job.id, cid: event.cid, attempts: event.job.attempts });
}

export function onFailed(context: SupervisorContext, event: Report<'conn.failed'>, enqueue: Enqueue): void {
  const { job, error, cid } = event;
  if (context.inflight.get(cid) !== job) {
    context.log.debug('late failure report ignored', { jobId: job.id, cid, code: error.code });
    return;
  }
  context.inflight.delete(cid);
  if (error.code === 'ESTALE') {
    // The session is gone: its next job comes back now, so that it queues
    // behind this one rather than ahead of it (conn.down would put it first,
    // and this one would meet the next stale socket again).
    returnNext(context, cid);
  } else {
    // A connection that fails for good reports conn.down next, which hands the next job back.
    promoteNext(context, cid, enqueue);
  }
  job.lastCid = cid;
  const { maxAttempts, retryBaseMs, retryMaxMs } = context.options;
  if (error.code === 'ESTALE' && job.staleRequeues < maxAttempts && !job.settled()) {
    // Not an attempt: the relay saw nothing. Straight back to the queue head;
    // the connection that went stale backs off on its own.
    job.staleRequeues += 1;
    context.log.debug('requeued from a stale connection', { jobId: job.id, cid, requeues: job.staleRequeues });
    returnToQueue(context, job);
    dispatch(context, enqueue);
    return;
  }
  if (error.transient && job.attempts < maxAttempts && !job.settled()) {
    const delay = backoffDelay(job.attempts, retryBaseMs, retryMaxMs);
    context.log.info('retrying', { jobId: job.id, cid, attempt: job.attempts, code: error.code, delayMs: delay });
    context.retrying.add(job);
    enqueue.raise({ type: 'job.retry', job }, { delay });
    return;
  }
  context.log.info('failed', { jobId: job.id, cid, attempts: job.attempts, code: error.code, reply: error.smtp && formatReply(error.smtp) });
  job.reject(error);
}

export function onBounced(context: SupervisorContext, event: Report<'conn.bounced'>, enqueue: Enqueue): void {
  // A busy connection that will not take a next job gets none until it is idle.
  if (context.next.get(event.cid) === event.job) context.noNext.add(event.cid);
  // conn.down may have taken it back already; requeueing it twice would send it twice.
  if (takeBack(context, event.cid, event.job) === undefined) return;
  returnToQueue(context, event.job);
  dispatch(context, enqueue);
}

/**
 * A connection actor that throws is a bug, but it must not take the pool
 * down (an unhandled child error would put the supervisor itself in error):
 * treat it as a connection gone down, and start a new actor after a backoff.
 */
export function onChildError(context: SupervisorContext, event: ChildError, enqueue: Enqueue, stopping: boolean): void {
  const actorId = event.type.slice(CHILD_ERROR.length);
  const cid = actorId.split('~')[0] ?? actorId;
  const reason = event.error instanceof Error ? event.error.message : String(event.error);
  if (!context.connections.has(cid)) {
    context.log.error('supervisor helper actor failed', { actor: actorId, reason });
    return;
  }
  const crashes = (context.crashes.get(cid) ?? 0) + 1;
  context.crashes.set(cid, crashes);
  context.log.error('SMTP connection actor crashed', { cid, crashes, reason });
  onDown(context, { type: 'conn.down', cid, error: new MailroomError('EINTERNAL', `connection actor crashed: ${reason}`, { cause: event.error }) }, enqueue);
  if (stopping) {
    context.closed.add(cid);
    return;
  }
  const { backoffBaseMs, backoffMaxMs } = context.options.connection;
  enqueue.raise({ type: 'conn.respawn', cid }, { delay: backoffDelay(crashes, backoffBaseMs, backoffMaxMs) });
}

export function connectionInput(context: Pick<SupervisorContext, 'options' | 'log'>, cid: string): { cid: string; options: ConnectionOptions; log: Logger } {
  return { cid, options: context.options.connection, log: context.log.child({ cid }) };
}

export function onRetry(context: SupervisorContext, event: Report<'job.retry'>, enqueue: Enqueue): void {
  if (!context.retrying.delete(event.job)) return; // already failed by shutdown
  context.queue.unshift(event.job);
  dispatch(context, enqueue);
}

export function onSubmitted(context: SupervisorContext, event: Report<'jobs.submitted'>, enqueue: Enqueue): void {
  for (const job of event.jobs) {
    if (context.queue.length >= context.options.queueLimit) {
      job.reject(new MailroomError('EQUEUEFULL', `the send queue is full (${context.options.queueLimit} waiting)`, { retryAfterSeconds: 1 }));
    } else {
      context.queue.push(job);
    }
  }
  dispatch(context, enqueue);
}
