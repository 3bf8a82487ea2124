// The pool: owns WORKERS connection actors and the job stream. It gives each
// job to an idle authenticated connection, keeps a bounded queue, retries
// transient failures with backoff, fails permanent ones at once, and on
// shutdown drains what it holds before closing the connections. Every job is
// settled exactly once (MailJob guards that) and none is dropped silently.
//
// Context holds mutable collections owned by this actor alone: copying a
// queue of thousands of jobs on every event would make each job cost O(n).
import { enqueueActions, fromCallback, setup, emit, type ActorRefFrom } from 'xstate';
import type { Observable } from 'rxjs';
import type { Logger } from 'winston';
import type { MailJob } from '../mail/job.js';
import { Deque } from '../mail/deque.js';
import { TokenBucket } from '../mail/token-bucket.js';
import { smtpConnectionMachine, type ConnectionOptions, type ConnectionReport, type SmtpConnectionActor } from './smtp-connection.js';
import { JobSlots } from './job-slots.js';
import {
  connectionInput,
  dispatch,
  failEverything,
  failWaiting,
  onBounced,
  onChildError,
  onDelivered,
  onDown,
  onFailed,
  onReady,
  onRetry,
  onSubmitted,
  refuseAll,
  sweepQueue,
  type ChildError,
  type SupervisorContext,
} from './supervisor-handlers.js';

export interface SupervisorOptions {
  readonly workers: number;
  readonly queueLimit: number;
  readonly maxAttempts: number;
  readonly rateLimitPerSecond: number;
  /** a queued job waits at most this long for a connection */
  readonly queueTimeoutMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** how long closing connections may take to QUIT after the drain */
  readonly closeTimeoutMs: number;
  readonly connection: ConnectionOptions;
}

export interface SupervisorInput {
  readonly options: SupervisorOptions;
  readonly jobs$: Observable<MailJob>;
  readonly log: Logger;
}

export type SupervisorEvent =
  | ConnectionReport
  /** the jobs submitted since the last such event, in order (see `feed`) */
  | { type: 'jobs.submitted'; jobs: MailJob[] }
  | { type: 'job.retry'; job: MailJob }
  | { type: 'tick' }
  | { type: 'sweep' }
  | { type: 'shutdown'; timeoutMs: number }
  | { type: 'shutdown.deadline' }
  | { type: 'close.deadline' }
  /** a connection actor crashed (a bug, not a relay fault): start a new one */
  | { type: 'conn.respawn'; cid: string };

export type SupervisorEmitted = { type: 'pool.health'; up: number; workers: number };

export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: {
    connection: smtpConnectionMachine,
    // The RxJS job stream, turned into events in this actor's mailbox. Jobs
    // submitted in one go (the calls of one network read) travel as one
    // event: each event costs this actor a whole xstate step.
    feed: fromCallback<SupervisorEvent, Observable<MailJob>>(({ input, sendBack }) => {
      let batch: MailJob[] | undefined;
      let stopped = false;
      const subscription = input.subscribe((job) => {
        if (batch !== undefined) {
          batch.push(job);
          return;
        }
        const jobs = [job];
        batch = jobs;
        queueMicrotask(() => {
          batch = undefined;
          // A batch that outlived the supervisor is answered, not dropped.
          if (stopped) refuseAll(jobs);
          else sendBack({ type: 'jobs.submitted', jobs });
        });
      });
      return () => {
        stopped = true;
        subscription.unsubscribe();
      };
    }),
    ticker: fromCallback<SupervisorEvent, { ms: number; event: SupervisorEvent; repeat: boolean }>(({ input, sendBack }) => {
      const timer = input.repeat ? setInterval(() => sendBack(input.event), input.ms) : setTimeout(() => sendBack(input.event), input.ms);
      timer.unref?.();
      return () => clearTimeout(timer);
    }),
  },
  guards: {
    drained: ({ context }) => context.queue.length === 0 && context.inflight.size === 0 && context.next.size === 0 && context.retrying.size === 0,
    allClosed: ({ context }) => context.closed.size === context.connections.size,
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input, spawn }) => {
    const { options, log } = input;
    const connections = new Map<string, SmtpConnectionActor>();
    for (let i = 1; i <= options.workers; i++) {
      const cid = `c${i}`;
      connections.set(cid, spawn('connection', { id: cid, input: connectionInput({ options, log }, cid) }));
    }
    return {
      options,
      log,
      jobs$: input.jobs$,
      connections,
      idle: [],
      up: new Set(),
      closed: new Set(),
      queue: new Deque<MailJob>(),
      inflight: new JobSlots(),
      next: new JobSlots(),
      noNext: new Set(),
      retrying: new Set(),
      bucket: options.rateLimitPerSecond > 0 ? new TokenBucket(options.rateLimitPerSecond, Date.now()) : undefined,
      lastDownError: undefined,
      tickScheduled: false,
      shutdownTimeoutMs: 0,
      unreachableCode: undefined,
      reachedOnce: false,
      crashes: new Map(),
    };
  },
  invoke: [
    { src: 'feed', input: ({ context }) => context.jobs$ },
    {
      src: 'ticker',
      input: ({ context }) => ({ ms: Math.max(50, Math.min(1000, context.options.queueTimeoutMs / 4)), event: { type: 'sweep' }, repeat: true }),
    },
  ],
  on: {
    'conn.ready': { actions: enqueueActions(({ context, event, enqueue }) => onReady(context, event, enqueue)) },
    'conn.down': { actions: enqueueActions(({ context, event, enqueue }) => onDown(context, event, enqueue)) },
    'conn.delivered': { actions: enqueueActions(({ context, event, enqueue }) => onDelivered(context, event, enqueue)) },
    'conn.failed': { actions: enqueueActions(({ context, event, enqueue }) => onFailed(context, event, enqueue)) },
    'conn.bounced': { actions: enqueueActions(({ context, event, enqueue }) => onBounced(context, event, enqueue)) },
    'job.retry': { actions: enqueueActions(({ context, event, enqueue }) => onRetry(context, event, enqueue)) },
    tick: {
      actions: enqueueActions(({ context, enqueue }) => {
        context.tickScheduled = false;
        dispatch(context, enqueue);
      }),
    },
    sweep: { actions: ({ context }) => sweepQueue(context) },
    'xstate.error.actor.*': {
      actions: enqueueActions(({ context, event, enqueue }) => onChildError(context as SupervisorContext, event as ChildError, enqueue, false)),
    },
    'conn.respawn': {
      actions: enqueueActions(({ context, event, enqueue }) => {
        const { cid } = event;
        enqueue.assign(({ spawn }) => {
          const id = `${cid}~${context.crashes.get(cid) ?? 0}`;
          context.connections.set(cid, spawn('connection', { id, input: connectionInput(context, cid) }));
          return {};
        });
      }),
    },
    'conn.closed': {
      actions: ({ context, event }) => {
        context.closed.add(event.cid);
        context.up.delete(event.cid);
      },
    },
  },
  initial: 'running',
  states: {
    running: {
      on: {
        'jobs.submitted': { actions: enqueueActions(({ context, event, enqueue }) => onSubmitted(context, event, enqueue)) },
        shutdown: {
          target: 'draining',
          actions: [
            ({ context, event }) => {
              context.shutdownTimeoutMs = event.timeoutMs;
              context.log.info('draining', { queued: context.queue.length, inflight: context.inflight.size });
            },
          ],
        },
      },
    },
    draining: {
      invoke: {
        src: 'ticker',
        input: ({ context }) => ({ ms: context.shutdownTimeoutMs, event: { type: 'shutdown.deadline' }, repeat: false }),
      },
      always: { guard: 'drained', target: 'stopping' },
      on: {
        'jobs.submitted': { actions: ({ event }) => refuseAll(event.jobs) },
        'shutdown.deadline': {
          target: 'stopping',
          actions: ({ context }) => {
            context.log.warn('shutdown deadline passed', { queued: context.queue.length, inflight: context.inflight.size });
            // A message in flight may already be with the relay: failing it now
            // would tell its caller UNAVAILABLE for mail that then goes out, and a
            // retry would send it twice. Its connection finishes it (bounded by
            // the command deadlines, then close.deadline) before it QUITs.
            failWaiting(context, 'the service shut down before the message could be sent');
          },
        },
      },
    },
    stopping: {
      entry: enqueueActions(({ context, enqueue }) => {
        for (const ref of context.connections.values()) enqueue.sendTo(ref, { type: 'SHUTDOWN' });
      }),
      invoke: {
        src: 'ticker',
        input: ({ context }) => ({ ms: context.options.closeTimeoutMs, event: { type: 'close.deadline' }, repeat: false }),
      },
      always: { guard: 'allClosed', target: 'stopped' },
      on: {
        'jobs.submitted': { actions: ({ event }) => refuseAll(event.jobs) },
        // A crash now counts as closed; nothing is respawned.
        'xstate.error.actor.*': {
          actions: enqueueActions(({ context, event, enqueue }) => onChildError(context as SupervisorContext, event as ChildError, enqueue, true)),
        },
        'conn.respawn': { actions: ({ context, event }) => context.closed.add(event.cid) },
        'close.deadline': {
          target: 'stopped',
          actions: enqueueActions(({ context, enqueue }) => {
            for (const ref of context.connections.values()) enqueue.sendTo(ref, { type: 'FORCE_CLOSE' });
          }),
        },
      },
    },
    stopped: {
      type: 'final',
      entry: [({ context }) => failEverything(context, 'the service stopped'), emit({ type: 'pool.health', up: 0, workers: 0 })],
    },
  },
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
