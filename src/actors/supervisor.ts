// The pool: owns WORKERS connection actors and the job stream.
//
//   starting ──first dials ended──► serving ──shutdown──► draining ──drained or deadline──► closing ──all closed──► stopped
//                                   ┌──────────────────────────────────────────┐
//                                   │ up ⇄ degraded ⇄ down                      │  how many connections are usable
//                                   │         down: redialling ──► unreachable  │  every last dial refused: calls fail at once
//                                   └──────────────────────────────────────────┘
//
// Connections ask for work (conn.ready, and the capacity each outcome report
// carries); the supervisor hands each queued job to one that can take it,
// keeps a bounded queue, retries transient failures with backoff, fails
// permanent ones at once, and on shutdown drains what it holds before closing
// the connections. Where each job is, is the ledger's (job-ledger.ts): queued,
// waiting for a retry, or held by one connection, which owns it until it
// reports its outcome. Every job is settled exactly once and none silently.
//
// Context holds mutable collections owned by this actor alone: copying a
// queue of thousands of jobs on every event would make each job cost O(n).
//
// One file over 300 lines because a machine is one setup() and one
// createMachine() expression: xstate types every action, guard and
// transition from it, and a reader follows the chart in one place. What the
// actions do at length lives beside it: job-ledger.ts, pool.ts, dispatch.ts.
import { emit, enqueueActions, fromCallback, setup, type ActorRefFrom } from 'xstate';
import type { Observable } from 'rxjs';
import type { Logger } from 'winston';
import { MailroomError, type ErrorCode } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import { TokenBucket } from '../lib/token-bucket.js';
import { formatReply } from '../smtp/reply.js';
import { backoffDelay } from '../lib/backoff.js';
import { dispatch, fail, sweepQueue } from './dispatch.js';
import { JobLedger } from './job-ledger.js';
import { Pool } from './pool.js';
import { smtpConnectionMachine, type ConnectionOptions, type ConnectionReport, type SmtpConnectionActor } from './smtp-connection.js';

/** The pool and its queue (config.pool). */
export interface PoolSettings {
  readonly workers: number;
  readonly queueLimit: number;
  /** delivery attempts of a job; retries wait the connections' backoff */
  readonly maxAttempts: number;
  readonly rateLimitPerSecond: number;
  /** a queued job waits at most this long for a connection */
  readonly queueTimeoutMs: number;
  /** once the pool has been down this long with every last dial refused, calls fail at once instead of waiting */
  readonly unreachableAfterMs: number;
}

export interface SupervisorOptions extends PoolSettings {
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

export type SupervisorEmitted =
  | { type: 'pool.health'; up: number; workers: number }
  /** a connection lost its session or failed a dial, and will dial again */
  | { type: 'conn.lost'; cid: string; code: ErrorCode };

interface SupervisorContext {
  readonly options: SupervisorOptions;
  readonly log: Logger;
  readonly jobs$: Observable<MailJob>;
  readonly ledger: JobLedger;
  readonly pool: Pool;
  readonly bucket: TokenBucket | undefined;
  tickScheduled: boolean;
  /** why a connection last went down, and which: the reason given to jobs that time out in the queue */
  lastDown: { cid: string; error: MailroomError } | undefined;
  shutdownTimeoutMs: number;
  /** until a first connection authenticates: the failure last logged, logged again only when it changes */
  unreachableCode: ErrorCode | undefined;
  /** whether any connection ever came up; after that, health changes speak for the pool */
  reachedOnce: boolean;
  /** epoch ms when the pool last lost its last connection */
  downSince: number;
}

/** What xstate sends a parent when a child actor fails: `xstate.error.actor.<id>`. */
interface ChildError {
  readonly type: string;
  readonly error: unknown;
}
const CHILD_ERROR = 'xstate.error.actor.';

type Report<T extends SupervisorEvent['type']> = Extract<SupervisorEvent, { type: T }>;

function connectionInput(context: Pick<SupervisorContext, 'options' | 'log'>, cid: string): { cid: string; options: ConnectionOptions; log: Logger } {
  return { cid, options: context.options.connection, log: context.log.child({ cid }) };
}

/** The connection an `xstate.error.actor.<id>` event is about (ids are `c3`, or `c3~2` after respawns). */
function crashedCid(event: ChildError): string {
  const actorId = event.type.slice(CHILD_ERROR.length);
  return actorId.split('~')[0] ?? actorId;
}

function health(context: SupervisorContext): Extract<SupervisorEmitted, { type: 'pool.health' }> {
  return { type: 'pool.health', up: context.pool.up, workers: context.options.workers };
}

/** The relay, and why the last dial to it failed: what a caller is told while it cannot be reached. */
function unreachableError(context: SupervisorContext): MailroomError {
  const { host, port } = context.options.connection.session;
  const last = context.lastDown?.error;
  return new MailroomError('EUNAVAILABLE', `relay ${host}:${port}: ${last?.message ?? 'unreachable'}`, { cause: last, smtp: last?.smtp });
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

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
          if (stopped) for (const j of jobs) fail(j, 'ESHUTDOWN', 'the service is shutting down');
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
  delays: {
    shutdownTimeout: ({ context }) => context.shutdownTimeoutMs,
    closeTimeout: ({ context }) => context.options.closeTimeoutMs,
    /** what is left of SMTP_UNREACHABLE_AFTER_MS since the pool went down */
    unreachableAfter: ({ context }) => Math.max(0, context.options.unreachableAfterMs - (Date.now() - context.downSince)),
  },
  guards: {
    allUp: ({ context }) => context.pool.up === context.options.workers,
    partlyUp: ({ context }) => context.pool.up > 0 && context.pool.up < context.options.workers,
    noneUp: ({ context }) => context.pool.up === 0,
    allTried: ({ context }) => context.pool.allTried,
    /**
     * No connection is up, every one's last dial found the relay unreachable
     * or refusing, and that has lasted SMTP_UNREACHABLE_AFTER_MS (or the relay
     * was never reached): calls fail at once instead of waiting for it. A
     * relay that restarts is back before then, and the calls meanwhile wait.
     */
    unreachable: ({ context }) =>
      context.pool.unreachable && (!context.reachedOnce || Date.now() - context.downSince >= context.options.unreachableAfterMs),
    /** a connection lost its session before the relay saw any of the job: it goes back at no cost, a bounded number of times */
    stale: ({ context }, params: { job: MailJob; error: MailroomError }) =>
      params.error.code === 'ESTALE' && params.job.staleRequeues < context.options.maxAttempts,
    /** ESTALE counts no attempt: once its free requeues are spent it fails, or it would go round for ever. */
    worthRetrying: ({ context }, params: { job: MailJob; error: MailroomError }) =>
      params.error.transient && params.error.code !== 'ESTALE' && params.job.attempts < context.options.maxAttempts && !params.job.settled(),
    drained: ({ context }) => context.ledger.empty,
    allClosed: ({ context }) => context.pool.allClosed,
  },
  actions: {
    admitJobs: ({ context }, params: { jobs: readonly MailJob[] }) => {
      const { ledger, options } = context;
      for (const job of params.jobs) {
        if (ledger.queued >= options.queueLimit) {
          job.reject(new MailroomError('EQUEUEFULL', `the send queue is full (${options.queueLimit} waiting)`, { retryAfterSeconds: 1 }));
        } else {
          ledger.admit(job);
        }
      }
    },
    refuseJobs: (_, params: { jobs: readonly MailJob[] }) => {
      for (const job of params.jobs) fail(job, 'ESHUTDOWN', 'the service is shutting down');
    },
    dispatch: enqueueActions(({ context, enqueue }) =>
      dispatch(context, {
        give: (ref, job) => enqueue.sendTo(ref, { type: 'JOB', job }),
        tickIn: (ms) => enqueue.raise({ type: 'tick' }, { delay: ms }),
      }),
    ),
    clearTick: ({ context }) => {
      context.tickScheduled = false;
    },
    sweepQueue: ({ context }) => sweepQueue(context.ledger, context.options.queueTimeoutMs, context.pool.up === 0 ? context.lastDown?.error : undefined),
    markReady: enqueueActions(({ context, enqueue }, params: { cid: string; capacity: number }) => {
      if (!context.pool.ready(params.cid, params.capacity)) return;
      context.reachedOnce = true;
      context.log.debug('SMTP connection up', { up: context.pool.up, workers: context.options.workers });
      enqueue.emit(health(context));
    }),
    offer: ({ context }, params: { cid: string; capacity: number }) => context.pool.offer(params.cid, params.capacity),
    markDown: enqueueActions(({ context, enqueue }, params: { cid: string; error: MailroomError; refused: boolean }) => {
      const { pool, log, options } = context;
      context.lastDown = { cid: params.cid, error: params.error };
      if (pool.down(params.cid, params.refused)) {
        if (pool.up > 0) log.warn('SMTP connection down', { cid: params.cid, up: pool.up, workers: options.workers, code: params.error.code, reason: params.error.message });
        enqueue.emit(health(context));
      } else if (!context.reachedOnce && params.error.code !== context.unreachableCode) {
        // A relay that was never reached (refused certificate or credentials,
        // wrong host) would otherwise show its reason only in debug lines.
        log.warn('cannot reach the SMTP relay', { code: params.error.code, reason: params.error.message });
      }
      if (!context.reachedOnce) context.unreachableCode = params.error.code;
    }),
    markClosed: ({ context }, params: { cid: string }) => context.pool.closed(params.cid),
    reportLoss: emit((_, params: { cid: string; error: MailroomError }): SupervisorEmitted => ({ type: 'conn.lost', cid: params.cid, code: params.error.code })),
    /** Every queued job fails now with why the relay cannot be reached; none would go out before a dial succeeds. */
    failQueuedUnreachable: ({ context }) => {
      const error = unreachableError(context);
      for (const job of context.ledger.removeQueued(() => true)) job.reject(error);
    },
    refuseUnreachable: ({ context }, params: { jobs: readonly MailJob[] }) => {
      const error = unreachableError(context);
      for (const job of params.jobs) job.reject(error);
    },
    logPoolUp: ({ context }) => context.log.info('pool up', { up: context.pool.up, workers: context.options.workers }),
    markPoolDown: ({ context }) => {
      context.downSince = Date.now();
    },
    logPoolDown: ({ context }) => {
      // A relay never reached was reported as such already (markDown).
      if (!context.reachedOnce) return;
      const down = context.lastDown;
      context.log.error('pool down: no SMTP connection is up', { cid: down?.cid, up: 0, workers: context.options.workers, code: down?.error.code, reason: down?.error.message });
    },
    resolveJob: ({ context }, params: { cid: string; job: MailJob; reply: Report<'conn.delivered'>['reply'] }) => {
      const { job } = params;
      context.ledger.release(job);
      // A 250 is the truth even for a job the shutdown deadline already failed.
      job.resolve({ messageId: job.message.messageId, reply: params.reply, attempts: job.attempts });
      context.log.debug('delivered', { jobId: job.id, caller: job.caller || undefined, cid: params.cid, attempts: job.attempts });
    },
    requeueStale: ({ context }, params: { cid: string; job: MailJob }) => {
      const { job } = params;
      // Not an attempt: the relay saw nothing. The connection that went stale backs off on its own.
      job.staleRequeues += 1;
      job.lastCid = params.cid;
      context.ledger.giveBack(job);
      context.log.debug('requeued from a stale connection', { jobId: job.id, cid: params.cid, requeues: job.staleRequeues });
    },
    scheduleRetry: enqueueActions(({ context, enqueue }, params: { cid: string; job: MailJob; error: MailroomError }) => {
      const { job, error } = params;
      const { backoffBaseMs, backoffMaxMs } = context.options.connection;
      const delay = backoffDelay(job.attempts, backoffBaseMs, backoffMaxMs);
      job.lastCid = params.cid;
      context.ledger.deferRetry(job);
      context.log.info('retrying', { jobId: job.id, caller: job.caller || undefined, cid: params.cid, attempt: job.attempts, code: error.code, delayMs: delay });
      enqueue.raise({ type: 'job.retry', job }, { delay });
    }),
    failJob: ({ context }, params: { cid: string; job: MailJob; error: MailroomError }) => {
      const { job, error } = params;
      context.ledger.release(job);
      context.log.info('failed', { jobId: job.id, caller: job.caller || undefined, cid: params.cid, attempts: job.attempts, code: error.code, reply: error.smtp && formatReply(error.smtp) });
      job.reject(error);
    },
    /** Jobs a connection gives back untouched go to the front of the line. */
    takeBack: ({ context }, params: { jobs: readonly MailJob[] }) => {
      for (const job of params.jobs) context.ledger.giveBack(job);
    },
    /** Once the connections are closing, a job given back has nowhere to go. */
    failReturned: ({ context }, params: { jobs: readonly MailJob[] }) => {
      for (const job of params.jobs) {
        context.ledger.release(job);
        fail(job, 'ESHUTDOWN', 'the service stopped; the relay had not confirmed the message');
      }
    },
    requeueRetry: ({ context }, params: { job: MailJob }) => {
      context.ledger.retryDue(params.job); // false: shutdown failed it meanwhile
    },
    /**
     * A connection actor that throws is a bug, but it must not take the pool
     * down (an unhandled child error would put the supervisor itself in
     * error): what it held goes back to the queue (the dead actor can report
     * nothing), and a new actor starts after a backoff.
     */
    recoverCrash: enqueueActions(({ context, enqueue }, params: { event: ChildError; respawn: boolean }) => {
      const cid = crashedCid(params.event);
      const { pool, ledger, log, options } = context;
      if (!pool.has(cid)) {
        log.error('supervisor helper actor failed', { actor: params.event.type.slice(CHILD_ERROR.length), reason: reason(params.event.error) });
        return;
      }
      const crashes = pool.crashed(cid);
      log.error('SMTP connection actor crashed', { cid, crashes, reason: reason(params.event.error) });
      const error = new MailroomError('EINTERNAL', `connection actor crashed: ${reason(params.event.error)}`, { cause: params.event.error });
      context.lastDown = { cid, error };
      if (pool.down(cid)) {
        if (pool.up > 0) log.warn('SMTP connection down', { cid, up: pool.up, workers: options.workers, code: error.code, reason: error.message });
        enqueue.emit(health(context));
      }
      if (!params.respawn) {
        pool.closed(cid);
        for (const job of ledger.forfeit(cid)) fail(job, 'ESHUTDOWN', 'the service stopped; the relay had not confirmed the message');
        return;
      }
      ledger.reclaim(cid);
      const { backoffBaseMs, backoffMaxMs } = options.connection;
      enqueue.raise({ type: 'conn.respawn', cid }, { delay: backoffDelay(crashes, backoffBaseMs, backoffMaxMs) });
    }),
    respawn: enqueueActions(({ context, enqueue }, params: { cid: string }) => {
      const { cid } = params;
      enqueue.assign(({ spawn }) => {
        const id = `${cid}~${context.pool.crashes(cid)}`;
        context.pool.replace(cid, spawn('connection', { id, input: connectionInput(context, cid) }));
        return {};
      });
    }),
    startDrain: ({ context }, params: { timeoutMs: number }) => {
      context.shutdownTimeoutMs = params.timeoutMs;
      context.log.info('draining', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
    },
    /**
     * Fails the jobs no connection holds: none of them has reached the relay.
     * A message in flight may already be with the relay: failing it now
     * would tell its caller UNAVAILABLE for mail that then goes out, and a
     * retry would send it twice. Its connection finishes it (bounded by the
     * command deadlines, then the close deadline) before it QUITs.
     */
    failWaiting: ({ context }) => {
      context.log.warn('shutdown deadline passed', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
      for (const job of context.ledger.takeWaiting()) fail(job, 'ESHUTDOWN', 'the service shut down before the message could be sent');
    },
    shutDownConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'SHUTDOWN' });
    }),
    forceCloseConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'FORCE_CLOSE' });
    }),
    failEverything: ({ context }) => {
      for (const job of context.ledger.takeWaiting()) fail(job, 'ESHUTDOWN', 'the service stopped');
    },
    emitStopped: emit({ type: 'pool.health', up: 0, workers: 0 } satisfies SupervisorEmitted),
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input, spawn }) => {
    const { options, log } = input;
    const ledger = new JobLedger();
    const pool = new Pool(ledger);
    for (let i = 1; i <= options.workers; i++) {
      const cid = `c${i}`;
      pool.add(cid, spawn('connection', { id: cid, input: connectionInput({ options, log }, cid) }) as SmtpConnectionActor);
    }
    return {
      options,
      log,
      jobs$: input.jobs$,
      ledger,
      pool,
      bucket: options.rateLimitPerSecond > 0 ? new TokenBucket(options.rateLimitPerSecond, 1000, Date.now()) : undefined,
      tickScheduled: false,
      lastDown: undefined,
      shutdownTimeoutMs: 0,
      unreachableCode: undefined,
      reachedOnce: false,
      downSince: Date.now(),
    };
  },
  invoke: [
    { id: 'feed', src: 'feed', input: ({ context }) => context.jobs$ },
    {
      id: 'ticker',
      src: 'ticker',
      input: ({ context }) => ({ ms: Math.max(50, Math.min(1000, context.options.queueTimeoutMs / 4)), event: { type: 'sweep' }, repeat: true }),
    },
  ],
  // Jobs are taken in until the pool drains, and what connections report is
  // handled alike until it is closing.
  on: {
    'jobs.submitted': { actions: [{ type: 'admitJobs', params: ({ event }) => ({ jobs: event.jobs }) }, 'dispatch'] },
    'conn.ready': {
      actions: [
        { type: 'markReady', params: ({ event }) => ({ cid: event.cid, capacity: event.capacity }) },
        'dispatch',
      ],
    },
    'conn.delivered': {
      actions: [
        { type: 'resolveJob', params: ({ event }) => ({ cid: event.cid, job: event.job, reply: event.reply }) },
        { type: 'offer', params: ({ event }) => ({ cid: event.cid, capacity: event.capacity }) },
        'dispatch',
      ],
    },
    'conn.failed': [
      {
        guard: { type: 'stale', params: ({ event }) => ({ job: event.job, error: event.error }) },
        actions: [
          { type: 'requeueStale', params: ({ event }) => ({ cid: event.cid, job: event.job }) },
          { type: 'offer', params: ({ event }) => ({ cid: event.cid, capacity: event.capacity }) },
          'dispatch',
        ],
      },
      {
        guard: { type: 'worthRetrying', params: ({ event }) => ({ job: event.job, error: event.error }) },
        actions: [
          { type: 'scheduleRetry', params: ({ event }) => ({ cid: event.cid, job: event.job, error: event.error }) },
          { type: 'offer', params: ({ event }) => ({ cid: event.cid, capacity: event.capacity }) },
          'dispatch',
        ],
      },
      {
        actions: [
          { type: 'failJob', params: ({ event }) => ({ cid: event.cid, job: event.job, error: event.error }) },
          { type: 'offer', params: ({ event }) => ({ cid: event.cid, capacity: event.capacity }) },
          'dispatch',
        ],
      },
    ],
    'conn.returned': { actions: [{ type: 'takeBack', params: ({ event }) => ({ jobs: event.jobs }) }, 'dispatch'] },
    'conn.down': {
      actions: [
        { type: 'markDown', params: ({ event }) => ({ cid: event.cid, error: event.error, refused: event.refused }) },
        { type: 'reportLoss', params: ({ event }) => ({ cid: event.cid, error: event.error }) },
        { type: 'takeBack', params: ({ event }) => ({ jobs: event.returned }) },
        'dispatch',
      ],
    },
    'conn.closed': {
      actions: [{ type: 'markClosed', params: ({ event }) => ({ cid: event.cid }) }, { type: 'failReturned', params: ({ event }) => ({ jobs: event.returned }) }],
    },
    'job.retry': { actions: [{ type: 'requeueRetry', params: ({ event }) => ({ job: event.job }) }, 'dispatch'] },
    tick: { actions: ['clearTick', 'dispatch'] },
    sweep: { actions: 'sweepQueue' },
    'xstate.error.actor.*': {
      actions: [{ type: 'recoverCrash', params: ({ event }: { event: unknown }) => ({ event: event as ChildError, respawn: true }) }, 'dispatch'],
    },
    'conn.respawn': { actions: { type: 'respawn', params: ({ event }) => ({ cid: event.cid }) } },
  },
  initial: 'starting',
  states: {
    starting: {
      always: [
        { guard: 'allUp', target: 'serving.up' },
        { guard: 'partlyUp', target: 'serving.degraded' },
        { guard: 'allTried', target: 'serving.down' },
      ],
      on: {
        shutdown: { target: 'draining', actions: { type: 'startDrain', params: ({ event }) => ({ timeoutMs: event.timeoutMs }) } },
      },
    },
    serving: {
      on: {
        shutdown: { target: 'draining', actions: { type: 'startDrain', params: ({ event }) => ({ timeoutMs: event.timeoutMs }) } },
      },
      // entered through starting's choice; `down` only names a default
      initial: 'down',
      states: {
        up: {
          entry: 'logPoolUp',
          always: [
            { guard: 'noneUp', target: 'down' },
            { guard: 'partlyUp', target: 'degraded' },
          ],
        },
        degraded: {
          always: [
            { guard: 'allUp', target: 'up' },
            { guard: 'noneUp', target: 'down' },
          ],
        },
        down: {
          entry: ['markPoolDown', 'logPoolDown'],
          always: [
            { guard: 'allUp', target: 'up' },
            { guard: 'partlyUp', target: 'degraded' },
          ],
          initial: 'redialling',
          states: {
            // Connections dial again after a loss or a handshake cut short: calls wait for them.
            redialling: {
              always: { guard: 'unreachable', target: 'unreachable' },
              // the guard is judged again once the outage has lasted long enough
              after: { unreachableAfter: { guard: 'unreachable', target: 'unreachable' } },
            },
            unreachable: {
              entry: 'failQueuedUnreachable',
              on: {
                'jobs.submitted': { actions: { type: 'refuseUnreachable', params: ({ event }) => ({ jobs: event.jobs }) } },
                'job.retry': { actions: [{ type: 'requeueRetry', params: ({ event }) => ({ job: event.job }) }, 'failQueuedUnreachable'] },
              },
            },
          },
        },
      },
    },
    draining: {
      after: { shutdownTimeout: { target: 'closing', actions: 'failWaiting' } },
      always: { guard: 'drained', target: 'closing' },
      on: {
        'jobs.submitted': { actions: { type: 'refuseJobs', params: ({ event }) => ({ jobs: event.jobs }) } },
      },
    },
    closing: {
      entry: 'shutDownConnections',
      after: { closeTimeout: { actions: 'forceCloseConnections' } },
      always: { guard: 'allClosed', target: 'stopped' },
      on: {
        'jobs.submitted': { actions: { type: 'refuseJobs', params: ({ event }) => ({ jobs: event.jobs }) } },
        'conn.returned': { actions: { type: 'failReturned', params: ({ event }) => ({ jobs: event.jobs }) } },
        'conn.down': {
          actions: [
            { type: 'markDown', params: ({ event }) => ({ cid: event.cid, error: event.error, refused: event.refused }) },
            { type: 'failReturned', params: ({ event }) => ({ jobs: event.returned }) },
          ],
        },
        // A crash now counts as closed; nothing is respawned.
        'xstate.error.actor.*': {
          actions: { type: 'recoverCrash', params: ({ event }: { event: unknown }) => ({ event: event as ChildError, respawn: false }) },
        },
        'conn.respawn': { actions: { type: 'markClosed', params: ({ event }) => ({ cid: event.cid }) } },
      },
    },
    stopped: {
      type: 'final',
      entry: ['failEverything', 'emitStopped'],
    },
  },
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
