// The pool: owns WORKERS connection actors, the job stream, and the
// delivery of the outbox.
//
//   starting ──first dials ended──► serving ──shutdown──► draining ──drained or deadline──► closing ──all closed──► stopped
//
//   serving, in three regions at once:
//     pool:   up ⇄ degraded ⇄ down (redialling ──SMTP_UNREACHABLE_AFTER_MS──► unreachable)
//     jobs:   idle ⇄ flowing ⇄ backlogged     submitted → queued → handed to a connection → delivered | failed | retried | given back
//     outbox: resting ⇄ claiming     due messages are claimed when connections have room and no caller waits
//
// A job's story is handled where it can happen: in starting, in
// serving.jobs and in draining (closing only takes jobs back). A job is in
// exactly one place (job-ledger.ts), and a connection owns the jobs it
// holds until it reports their outcomes; what each turn of the story does
// is jobs.ts. A job a caller waits on is answered; one from the outbox has
// its outcome recorded, through the `outbox` child, which alone writes the
// store (outbox-work.ts). Context holds mutable collections owned by this
// actor alone: copying a queue of thousands of jobs on every event would
// make each job cost O(n).
import { assertEvent, emit, enqueueActions, fromCallback, not, setup, stateIn, type ActorRefFrom } from 'xstate';
import type { Observable } from 'rxjs';
import { MailroomError } from '../errors.js';
import { TokenBucket } from '../lib/token-bucket.js';
import type { MailJob } from '../mail/job.js';
import type { OutboxRequest } from '../outbox/requests.js';
import type { Change } from '../outbox/store.js';
import { backoffDelay } from '../lib/backoff.js';
import { dispatch, fail, sweepQueue } from './dispatch.js';
import { JobLedger } from './job-ledger.js';
import * as story from './jobs.js';
import { claimedJobs, outboxWorker, type OutboxWork } from './outbox-work.js';
import { Pool } from './pool.js';
import { smtpConnectionMachine, type SmtpConnectionActor } from './smtp-connection.js';
import type { ChildError, SupervisorContext, SupervisorEmitted, SupervisorEvent, SupervisorInput } from './supervisor-context.js';

export type { PoolSettings, SupervisorEvent, SupervisorInput, SupervisorOptions } from './supervisor-context.js';

const CHILD_ERROR = 'xstate.error.actor.';
/** how often the outbox's due times are looked at again, and its housekeeping runs */
const OUTBOX_LOOK_MS = 1000;

function connectionInput(context: Pick<SupervisorContext, 'options' | 'log'>, cid: string) {
  return { cid, options: context.options.connection, log: context.log.child({ cid }) };
}

/** The connection an `xstate.error.actor.<id>` event is about (ids are `c3`, or `c3~2` after respawns). */
function crashedCid(event: ChildError): string {
  const actorId = event.type.slice(CHILD_ERROR.length);
  return actorId.split('~')[0] ?? actorId;
}

function health(context: SupervisorContext): SupervisorEmitted {
  return { type: 'pool.health', up: context.pool.up, workers: context.options.workers };
}

/** The relay, and why the last dial to it failed: what a caller is told while it cannot be reached. */
function unreachableError(context: SupervisorContext): MailroomError {
  const { host, port } = context.options.connection.session;
  const last = context.lastDown?.error;
  return new MailroomError('EUNAVAILABLE', `relay ${host}:${port}: ${last?.message ?? 'unreachable'}`, { cause: last, smtp: last?.smtp });
}

const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A crashed connection, logged and marked down; its id, or undefined when the crash was not a connection's. */
function noteCrash(context: SupervisorContext, crash: ChildError, emitHealth: (e: SupervisorEmitted) => void): string | undefined {
  const cid = crashedCid(crash);
  const { pool, log, options } = context;
  if (!pool.has(cid)) {
    log.error('supervisor helper actor failed', { actor: crash.type.slice(CHILD_ERROR.length), reason: reason(crash.error) });
    return undefined;
  }
  const crashes = pool.crashed(cid);
  log.error('SMTP connection actor crashed', { cid, crashes, reason: reason(crash.error) });
  const error = new MailroomError('EINTERNAL', `connection actor crashed: ${reason(crash.error)}`, { cause: crash.error });
  context.lastDown = { cid, error };
  if (pool.down(cid)) {
    if (pool.up > 0) log.warn('SMTP connection down', { cid, up: pool.up, workers: options.workers, code: error.code, reason: error.message });
    emitHealth(health(context));
  }
  return cid;
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
    outbox: outboxWorker,
    // The job and outbox streams, turned into events in this actor's
    // mailbox: what arrives in one go (the calls of one network read)
    // travels as one event, since each event costs a whole xstate step.
    feed: fromCallback<SupervisorEvent, { jobs$: Observable<MailJob>; outbox$: Observable<OutboxRequest> | undefined }>(({ input, sendBack }) => {
      let stopped = false;
      const batched = <T>(source: Observable<T>, flush: (items: T[]) => void) => {
        let batch: T[] | undefined;
        return source.subscribe((item) => {
          if (batch !== undefined) {
            batch.push(item);
            return;
          }
          const items = [item];
          batch = items;
          queueMicrotask(() => {
            batch = undefined;
            flush(items);
          });
        });
      };
      const jobs = batched(input.jobs$, (items) => {
        // A batch that outlived the supervisor is answered, not dropped.
        if (stopped) for (const j of items) fail(j, 'ESHUTDOWN', 'the service is shutting down');
        else sendBack({ type: 'jobs.submitted', jobs: items });
      });
      const outbox = input.outbox$ === undefined ? undefined : batched(input.outbox$, (requests) => {
        if (stopped) for (const r of requests) r.reply.reject(new MailroomError('ESHUTDOWN', 'the service is shutting down'));
        else sendBack({ type: 'outbox.requested', requests });
      });
      return () => {
        stopped = true;
        jobs.unsubscribe();
        outbox?.unsubscribe();
      };
    }),
    ticker: fromCallback<SupervisorEvent, { ms: number; event: SupervisorEvent }>(({ input, sendBack }) => {
      const timer = setInterval(() => sendBack(input.event), input.ms);
      timer.unref();
      return () => clearInterval(timer);
    }),
  },
  delays: {
    shutdownTimeout: ({ context }) => context.shutdownTimeoutMs,
    closeTimeout: ({ context }) => context.options.closeTimeoutMs,
    /** what is left of SMTP_UNREACHABLE_AFTER_MS since the pool went down */
    unreachableAfter: ({ context }) => Math.max(0, context.options.unreachableAfterMs - (Date.now() - context.downSince)),
    /** until the outbox's next message is due, looked at again at least every second (its clock may jump) */
    outboxDue: ({ context }) => Math.max(1, Math.min(OUTBOX_LOOK_MS, (context.outboxDueAt ?? Infinity) - context.now())),
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
    relayGone: stateIn('#supervisor.serving.pool.down.unreachable'),
    stale: ({ context, event }) => {
      assertEvent(event, 'conn.failed');
      return story.isStale(context, event);
    },
    worthRetrying: ({ context, event }) => {
      assertEvent(event, 'conn.failed');
      return story.isWorthRetrying(context, event);
    },
    /** the outbox has a message due, connections have room, and no caller's job waits for it */
    canClaim: ({ context }) =>
      context.outbox !== undefined && context.outboxDueAt !== undefined && context.outboxDueAt <= context.now() && context.pool.free > 0 && context.ledger.queued === 0,
    hasOutbox: ({ context }) => context.outbox !== undefined,
    backlog: ({ context }) => context.ledger.queued > 0,
    drained: ({ context }) => context.ledger.empty,
    allClosed: ({ context }) => context.pool.allClosed,
  },
  actions: {
    admitJobs: ({ context, event }) => {
      assertEvent(event, 'jobs.submitted');
      story.admit(context, event.jobs);
    },
    refuseJobs: ({ event }) => {
      assertEvent(event, 'jobs.submitted');
      for (const job of event.jobs) fail(job, 'ESHUTDOWN', 'the service is shutting down');
    },
    refuseUnreachable: ({ context, event }) => {
      assertEvent(event, 'jobs.submitted');
      const error = unreachableError(context);
      for (const job of event.jobs) job.reject(error);
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
    markReady: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'conn.ready');
      if (!context.pool.ready(event.cid, event.capacity)) return;
      context.reachedOnce = true;
      context.log.debug('SMTP connection up', { up: context.pool.up, workers: context.options.workers });
      enqueue.emit(health(context));
    }),
    offer: ({ context, event }) => {
      assertEvent(event, ['conn.delivered', 'conn.failed']);
      context.pool.offer(event.cid, event.capacity);
    },
    markDown: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'conn.down');
      const { pool, log, options } = context;
      context.lastDown = { cid: event.cid, error: event.error };
      enqueue.emit({ type: 'conn.lost', cid: event.cid, code: event.error.code });
      if (pool.down(event.cid, event.refused)) {
        if (pool.up > 0) log.warn('SMTP connection down', { cid: event.cid, up: pool.up, workers: options.workers, code: event.error.code, reason: event.error.message });
        enqueue.emit(health(context));
      } else if (!context.reachedOnce && event.error.code !== context.unreachableCode) {
        // A relay that was never reached (refused certificate or credentials,
        // wrong host) would otherwise show its reason only in debug lines.
        log.warn('cannot reach the SMTP relay', { code: event.error.code, reason: event.error.message });
      }
      if (!context.reachedOnce) context.unreachableCode = event.error.code;
    }),
    markClosed: ({ context, event }) => {
      assertEvent(event, ['conn.closed', 'conn.respawn']);
      context.pool.closed(event.cid);
    },
    /** Queued jobs cannot go out before a dial succeeds: a caller's fail now with why; an outbox job goes back to QUEUED. */
    giveUpQueued: enqueueActions(({ context, enqueue }) => {
      const error = unreachableError(context);
      const released: Change[] = [];
      for (const job of context.ledger.removeQueued(() => true)) {
        if (job.durable === undefined) job.reject(error);
        else released.push({ id: job.message.messageId, event: 'RELEASE', at: context.now() });
      }
      if (released.length > 0) enqueue.sendTo('outbox', { type: 'record', changes: released } satisfies OutboxWork);
    }),
    markPoolDown: ({ context }) => {
      context.downSince = Date.now();
    },
    logPoolUp: ({ context }) => context.log.info('pool up', { up: context.pool.up, workers: context.options.workers }),
    logPoolDown: ({ context }) => {
      // A relay never reached was reported as such already (markDown).
      if (!context.reachedOnce) return;
      const down = context.lastDown;
      context.log.error('pool down: no SMTP connection is up', { cid: down?.cid, up: 0, workers: context.options.workers, code: down?.error.code, reason: down?.error.message });
    },
    /** Each turn of a job's story (jobs.ts), with its effects: outcomes recorded in the outbox, retries timed. */
    story: enqueueActions(({ context, event, enqueue }) => {
      const changes: Change[] = [];
      const effects: story.JobEffects = {
        record: (change) => changes.push(change),
        retryIn: (job, ms) => enqueue.raise({ type: 'job.retry', job }, { delay: ms }),
        settled: (job, error) => enqueue.emit({ type: 'outbox.settled', job, error }),
      };
      switch (event.type) {
        case 'conn.delivered':
          story.delivered(context, event, effects);
          break;
        case 'conn.failed':
          if (story.isStale(context, event)) story.requeueStale(context, event);
          else if (story.isWorthRetrying(context, event)) story.scheduleRetry(context, event, effects);
          else story.settleFailure(context, event, effects);
          break;
        case 'conn.returned':
          story.takeBack(context, event.jobs);
          break;
        case 'conn.down':
          story.takeBack(context, event.returned);
          break;
        case 'job.retry':
          context.ledger.retryDue(event.job); // false: shutdown failed it meanwhile
          break;
        default:
      }
      if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes } satisfies OutboxWork);
    }),
    /** Once the connections are closing, a job given back has nowhere to go. */
    giveUpReturned: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, ['conn.returned', 'conn.down', 'conn.closed']);
      const changes: Change[] = [];
      const jobs = event.type === 'conn.returned' ? event.jobs : event.returned;
      story.giveUp(context, jobs, 'the service stopped; the relay had not confirmed the message', { record: (c) => changes.push(c), retryIn: () => undefined });
      if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes } satisfies OutboxWork);
    }),
    /**
     * A connection actor that throws is a bug, but it must not take the pool
     * down: what it held goes back to the queue (the dead actor can report
     * nothing), and a new actor starts after a backoff.
     */
    recoverCrash: enqueueActions(({ context, event, enqueue }) => {
      const cid = noteCrash(context, event as unknown as ChildError, (e) => enqueue.emit(e));
      if (cid === undefined) return;
      context.ledger.reclaim(cid);
      const { backoffBaseMs, backoffMaxMs } = context.options.connection;
      enqueue.raise({ type: 'conn.respawn', cid }, { delay: backoffDelay(context.pool.crashes(cid), backoffBaseMs, backoffMaxMs) });
    }),
    /** While closing, a crash counts as closed: what it held is given up, nothing is respawned. */
    closeCrashed: enqueueActions(({ context, event, enqueue }) => {
      const cid = noteCrash(context, event as unknown as ChildError, (e) => enqueue.emit(e));
      if (cid === undefined) return;
      context.pool.closed(cid);
      const changes: Change[] = [];
      story.giveUp(context, context.ledger.forfeit(cid), 'the service stopped; the relay had not confirmed the message', { record: (c) => changes.push(c), retryIn: () => undefined });
      if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes } satisfies OutboxWork);
    }),
    respawn: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'conn.respawn');
      const { cid } = event;
      enqueue.assign(({ spawn }) => {
        context.pool.replace(cid, spawn('connection', { id: `${cid}~${context.pool.crashes(cid)}`, input: connectionInput(context, cid) }));
        return {};
      });
    }),
    // ---- the outbox
    passToOutbox: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'outbox.requested');
      enqueue.sendTo('outbox', { type: 'requests', requests: event.requests, now: context.now() } satisfies OutboxWork);
    }),
    refuseOutbox: ({ event }) => {
      assertEvent(event, 'outbox.requested');
      for (const r of event.requests) r.reply.reject(new MailroomError('EUNAVAILABLE', 'the outbox is not open in this service'));
    },
    noteDue: ({ context, event }) => {
      assertEvent(event, ['outbox.accepted', 'outbox.due']);
      const at = event.type === 'outbox.accepted' ? event.dueAt : event.at;
      if (at !== undefined) context.outboxDueAt = Math.min(context.outboxDueAt ?? at, at);
    },
    claim: enqueueActions(({ context, enqueue }) => {
      const { workers, connection } = context.options;
      // Room now, and as much again behind it: the next claim's round trip is covered.
      const n = Math.min(256, context.pool.free + workers * connection.pipelineDepth);
      enqueue.sendTo('outbox', { type: 'claim', n, now: context.now() } satisfies OutboxWork);
    }),
    admitClaimed: ({ context, event }) => {
      assertEvent(event, 'outbox.claimed');
      context.outboxDueAt = event.nextDue;
      for (const job of claimedJobs(event.claimed)) context.ledger.admit(job);
    },
    /** Claimed while the service began to stop: back to QUEUED for the next start. */
    releaseClaimed: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'outbox.claimed');
      const at = context.now();
      enqueue.sendTo('outbox', { type: 'record', changes: event.claimed.map((c) => ({ id: c.id, event: 'RELEASE', at })) } satisfies OutboxWork);
    }),
    logUnclaimed: ({ context, event }) => {
      assertEvent(event, 'outbox.unclaimed');
      context.log.error('outbox: could not claim messages', { reason: event.error.message });
    },
    /** The relay is back: what waited out a deferral for its absence is due now, and drains at the pool's speed. */
    hasten: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'hasten', now: context.now() } satisfies OutboxWork);
    }),
    housekeep: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'housekeep', now: context.now(), retentionMs: context.outbox.settings.retentionMs } satisfies OutboxWork);
    }),
    // ---- shutdown
    startDrain: ({ context, event }) => {
      assertEvent(event, 'shutdown');
      context.shutdownTimeoutMs = event.timeoutMs;
      context.log.info('draining', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
    },
    /** Outbox jobs not yet with a connection wait for the next start, where they are. */
    releaseQueuedDurable: enqueueActions(({ context, enqueue }) => {
      const at = context.now();
      const changes = context.ledger.removeQueued((job) => job.durable !== undefined).map((job): Change => ({ id: job.message.messageId, event: 'RELEASE', at }));
      if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes } satisfies OutboxWork);
    }),
    /**
     * The deadline passed: the jobs no connection holds are given up (none
     * has reached the relay). A message in flight may already be with the
     * relay: failing it would tell its caller UNAVAILABLE for mail that goes
     * out, and a retry would send it twice; its connection finishes it.
     */
    giveUpWaiting: enqueueActions(({ context, enqueue }) => {
      context.log.warn('shutdown deadline passed', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
      const changes: Change[] = [];
      story.giveUp(context, context.ledger.takeWaiting(), 'the service shut down before the message could be sent', { record: (c) => changes.push(c), retryIn: () => undefined });
      if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes } satisfies OutboxWork);
    }),
    /** Stopped: whatever is still waiting (nothing, unless the connections closed on their own) is given up. */
    giveUpAll: ({ context }) => {
      story.giveUp(context, context.ledger.takeWaiting(), 'the service stopped', { record: () => undefined, retryIn: () => undefined });
    },
    shutDownConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'SHUTDOWN' });
    }),
    forceCloseConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'FORCE_CLOSE' });
    }),
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
    const now = input.now ?? Date.now;
    return {
      options,
      log,
      jobs$: input.jobs$,
      outbox: input.outbox,
      now,
      ledger,
      pool,
      bucket: options.rateLimitPerSecond > 0 ? new TokenBucket(options.rateLimitPerSecond, 1000, Date.now()) : undefined,
      tickScheduled: false,
      lastDown: undefined,
      shutdownTimeoutMs: 0,
      unreachableCode: undefined,
      reachedOnce: false,
      downSince: Date.now(),
      // After a restart whatever the store holds is looked at once.
      outboxDueAt: input.outbox === undefined ? undefined : now(),
    };
  },
  invoke: [
    { id: 'feed', src: 'feed', input: ({ context }) => ({ jobs$: context.jobs$, outbox$: context.outbox?.requests$ }) },
    {
      id: 'ticker',
      src: 'ticker',
      input: ({ context }) => ({ ms: Math.max(50, Math.min(1000, context.options.queueTimeoutMs / 4)), event: { type: 'sweep' } }),
    },
    { id: 'outbox', src: 'outbox', input: ({ context }) => ({ store: context.outbox?.store, log: context.log }) },
  ],
  // The outbox's store traffic goes on whatever the pool does: accepting a
  // message needs the disk, not the relay.
  on: {
    'outbox.requested': [{ guard: 'hasOutbox', actions: 'passToOutbox' }, { actions: 'refuseOutbox' }],
    'outbox.accepted': { actions: 'noteDue' },
    'outbox.due': { actions: 'noteDue' },
    'outbox.unclaimed': { actions: 'logUnclaimed' },
  },
  initial: 'starting',
  states: {
    starting: {
      always: [
        { guard: 'allUp', target: 'serving.pool.up' },
        { guard: 'partlyUp', target: 'serving.pool.degraded' },
        { guard: 'allTried', target: 'serving.pool.down' },
      ],
      on: {
        shutdown: { target: 'draining', actions: 'startDrain' },
        'jobs.submitted': { actions: ['admitJobs', 'dispatch'] },
        'conn.ready': { actions: ['markReady', 'dispatch'] },
        'conn.down': { actions: ['markDown', 'story', 'dispatch'] },
        'conn.returned': { actions: ['story', 'dispatch'] },
        sweep: { actions: 'sweepQueue' },
        'xstate.error.actor.*': { actions: ['recoverCrash', 'dispatch'] },
        'conn.respawn': { actions: 'respawn' },
      },
    },
    serving: {
      type: 'parallel',
      on: {
        shutdown: { target: 'draining', actions: 'startDrain' },
      },
      states: {
        pool: {
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
              exit: 'hasten',
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
                  entry: 'giveUpQueued',
                  on: { 'job.retry': { actions: ['story', 'giveUpQueued'] } },
                },
              },
            },
          },
        },
        jobs: {
          // What the queue does; the job traffic below is the same whatever it does.
          initial: 'idle',
          on: {
            'jobs.submitted': [{ guard: 'relayGone', actions: 'refuseUnreachable' }, { actions: ['admitJobs', 'dispatch'] }],
            'conn.ready': { actions: ['markReady', 'dispatch'] },
            'conn.delivered': { actions: ['story', 'offer', 'dispatch'] },
            'conn.failed': { actions: ['story', 'offer', 'dispatch'] },
            'conn.returned': { actions: ['story', 'dispatch'] },
            'conn.down': { actions: ['markDown', 'story', 'dispatch'] },
            'job.retry': { guard: not('relayGone'), actions: ['story', 'dispatch'] },
            tick: { actions: ['clearTick', 'dispatch'] },
            sweep: { actions: 'sweepQueue' },
            'xstate.error.actor.*': { actions: ['recoverCrash', 'dispatch'] },
            'conn.respawn': { actions: 'respawn' },
          },
          states: {
            // no job queued, held or waiting out a retry
            idle: { always: { guard: not('drained'), target: 'flowing' } },
            // every job the supervisor has is with a connection (or waits out a retry)
            flowing: {
              always: [
                { guard: 'drained', target: 'idle' },
                { guard: 'backlog', target: 'backlogged' },
              ],
            },
            // jobs wait for a connection with room (or for the rate limit)
            backlogged: { always: { guard: not('backlog'), target: 'flowing' } },
          },
        },
        outbox: {
          initial: 'resting',
          invoke: { src: 'ticker', input: { ms: 5 * OUTBOX_LOOK_MS, event: { type: 'outbox.wake' } } },
          on: { 'outbox.wake': { actions: 'housekeep' } },
          states: {
            resting: {
              always: { guard: 'canClaim', target: 'claiming' },
              after: { outboxDue: { guard: 'hasOutbox', target: 'resting', reenter: true } },
            },
            claiming: {
              entry: 'claim',
              on: {
                'outbox.claimed': { target: 'resting', actions: ['admitClaimed', 'dispatch'] },
                'outbox.unclaimed': { target: 'resting', actions: 'logUnclaimed' },
              },
            },
          },
        },
      },
    },
    draining: {
      entry: 'releaseQueuedDurable',
      after: { shutdownTimeout: { target: 'closing', actions: 'giveUpWaiting' } },
      always: { guard: 'drained', target: 'closing' },
      on: {
        'jobs.submitted': { actions: 'refuseJobs' },
        'outbox.claimed': { actions: 'releaseClaimed' },
        'conn.ready': { actions: ['markReady', 'dispatch'] },
        'conn.delivered': { actions: ['story', 'offer', 'dispatch'] },
        'conn.failed': { actions: ['story', 'offer', 'dispatch'] },
        'conn.returned': { actions: ['story', 'dispatch'] },
        'conn.down': { actions: ['markDown', 'story', 'dispatch'] },
        'job.retry': { actions: ['story', 'dispatch'] },
        tick: { actions: ['clearTick', 'dispatch'] },
        'xstate.error.actor.*': { actions: ['recoverCrash', 'dispatch'] },
        'conn.respawn': { actions: 'respawn' },
      },
    },
    closing: {
      entry: 'shutDownConnections',
      after: { closeTimeout: { actions: 'forceCloseConnections' } },
      always: { guard: 'allClosed', target: 'stopped' },
      on: {
        'jobs.submitted': { actions: 'refuseJobs' },
        'outbox.claimed': { actions: 'releaseClaimed' },
        // The connections finish what they hold before they QUIT.
        'conn.delivered': { actions: 'story' },
        'conn.failed': { actions: 'story' },
        'conn.returned': { actions: 'giveUpReturned' },
        'conn.down': { actions: ['markDown', 'giveUpReturned'] },
        'conn.closed': { actions: ['markClosed', 'giveUpReturned'] },
        'xstate.error.actor.*': { actions: 'closeCrashed' },
        'conn.respawn': { actions: 'markClosed' },
      },
    },
    stopped: {
      type: 'final',
      entry: ['giveUpAll', 'emitStopped'],
    },
  },
});

export type SupervisorActor = ActorRefFrom<typeof supervisorMachine>;
