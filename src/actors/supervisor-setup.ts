// What the supervisor's chart (supervisor.ts) names: its actors, delays,
// guards and actions. The chart says when each runs; this says what it
// does, at length where that is a line or two, and through jobs.ts,
// pool-health.ts, dispatch.ts and outbox-work.ts where it is more.
import { assertEvent, emit, enqueueActions, setup, stateIn } from 'xstate';
import { MailroomError } from '../errors.js';
import { backoffDelay } from '../lib/backoff.js';
import type { Change } from '../outbox/store.js';
import { dispatch, fail, sweepQueue } from './dispatch.js';
import * as story from './jobs.js';
import { claimedJobs, outboxWorker, type OutboxWork } from './outbox-work.js';
import * as poolHealth from './pool-health.js';
import { smtpConnectionMachine } from './smtp-connection.js';
import { feed, ticker } from './supervisor-feed.js';
import type { ChildError, SupervisorContext, SupervisorEmitted, SupervisorEvent, SupervisorInput } from './supervisor-context.js';

/** how often the outbox's due times are looked at again; its housekeeping runs every five of these */
export const OUTBOX_LOOK_MS = 1000;

export function connectionInput(context: Pick<SupervisorContext, 'options' | 'log'>, cid: string) {
  return { cid, options: context.options.connection, log: context.log.child({ cid }) };
}

/** What xstate's enqueueActions offers these actions. */
interface Enqueue {
  sendTo(target: 'outbox', event: OutboxWork): void;
  emit(event: SupervisorEmitted): void;
}

/** Outcomes for the outbox child to write, if there are any. */
function record(enqueue: Enqueue, changes: readonly Change[]): void {
  if (changes.length > 0) enqueue.sendTo('outbox', { type: 'record', changes });
}

export const supervisorSetup = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: { connection: smtpConnectionMachine, outbox: outboxWorker, feed, ticker },
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
    hasOutbox: ({ context }) => context.outbox !== undefined,
    /** the outbox has a message due, connections have room, and no caller's job waits for it */
    canClaim: ({ context }) =>
      context.outbox !== undefined && context.outboxDueAt !== undefined && context.outboxDueAt <= context.now() && context.pool.free > 0 && context.ledger.queued === 0,
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
      story.giveUp(context, event.jobs, poolHealth.unreachableError(context));
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
      poolHealth.markReady(context, event, (e) => enqueue.emit(e));
    }),
    offer: ({ context, event }) => {
      assertEvent(event, ['conn.delivered', 'conn.failed']);
      context.pool.offer(event.cid, event.capacity);
    },
    markDown: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'conn.down');
      poolHealth.markDown(context, event, (e) => enqueue.emit(e));
    }),
    markClosed: ({ context, event }) => {
      assertEvent(event, ['conn.closed', 'conn.respawn']);
      context.pool.closed(event.cid);
    },
    markPoolDown: ({ context }) => {
      context.downSince = Date.now();
    },
    logPoolUp: ({ context }) => context.log.info('pool up', { up: context.pool.up, workers: context.options.workers }),
    logPoolDown: ({ context }) => poolHealth.logPoolDown(context),
    /** Queued jobs cannot go out before a dial succeeds: a caller's fail now with why; an outbox job goes back to QUEUED. */
    giveUpQueued: enqueueActions(({ context, enqueue }) => record(enqueue, story.giveUp(context, context.ledger.removeQueued(() => true), poolHealth.unreachableError(context)))),
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
      record(enqueue, changes);
    }),
    /** Once the connections are closing, a job given back has nowhere to go. */
    giveUpReturned: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, ['conn.returned', 'conn.down', 'conn.closed']);
      record(enqueue, story.giveUp(context, event.type === 'conn.returned' ? event.jobs : event.returned, 'the service stopped; the relay had not confirmed the message'));
    }),
    /**
     * A connection actor that throws is a bug, but it must not take the pool
     * down: what it held goes back to the queue (the dead actor can report
     * nothing), and a new actor starts after a backoff.
     */
    recoverCrash: enqueueActions(({ context, event, enqueue }) => {
      const cid = poolHealth.noteCrash(context, event as unknown as ChildError, (e) => enqueue.emit(e));
      if (cid === undefined) return;
      context.ledger.reclaim(cid);
      const { backoffBaseMs, backoffMaxMs } = context.options.connection;
      enqueue.raise({ type: 'conn.respawn', cid }, { delay: backoffDelay(context.pool.crashes(cid), backoffBaseMs, backoffMaxMs) });
    }),
    /** While closing, a crash counts as closed: what it held is given up, nothing is respawned. */
    closeCrashed: enqueueActions(({ context, event, enqueue }) => {
      const cid = poolHealth.noteCrash(context, event as unknown as ChildError, (e) => enqueue.emit(e));
      if (cid === undefined) return;
      context.pool.closed(cid);
      record(enqueue, story.giveUp(context, context.ledger.forfeit(cid), 'the service stopped; the relay had not confirmed the message'));
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
      enqueue.sendTo('outbox', { type: 'requests', requests: event.requests, now: context.now() });
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
      enqueue.sendTo('outbox', { type: 'claim', n: Math.min(256, context.pool.free + workers * connection.pipelineDepthMax), now: context.now() });
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
      record(enqueue, event.claimed.map((c) => ({ id: c.id, event: 'RELEASE', at })));
    }),
    logUnclaimed: ({ context, event }) => {
      assertEvent(event, 'outbox.unclaimed');
      context.log.error('outbox: could not claim messages', { reason: event.error.message });
    },
    /** The relay is back: what waited out a deferral for its absence is due now, and drains at the pool's speed. */
    hasten: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'hasten', now: context.now() });
    }),
    housekeep: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'housekeep', now: context.now(), retentionMs: context.outbox.settings.retentionMs });
    }),
    // ---- shutdown
    startDrain: ({ context, event }) => {
      assertEvent(event, 'shutdown');
      context.shutdownTimeoutMs = event.timeoutMs;
      context.log.info('draining', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
    },
    /** Outbox jobs not yet with a connection wait for the next start, where they are. */
    releaseQueuedDurable: enqueueActions(({ context, enqueue }) => record(enqueue, story.giveUp(context, context.ledger.removeQueued((job) => job.durable !== undefined), ''))),
    /**
     * The deadline passed: the jobs no connection holds are given up (none
     * has reached the relay). A message in flight may already be with the
     * relay: failing it would tell its caller UNAVAILABLE for mail that goes
     * out, and a retry would send it twice; its connection finishes it.
     */
    giveUpWaiting: enqueueActions(({ context, enqueue }) => {
      context.log.warn('shutdown deadline passed', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
      record(enqueue, story.giveUp(context, context.ledger.takeWaiting(), 'the service shut down before the message could be sent'));
    }),
    /** Stopped: whatever still waits (nothing, unless the connections closed on their own) is given up; the next start queues outbox jobs again. */
    giveUpAll: ({ context }) => void story.giveUp(context, context.ledger.takeWaiting(), 'the service stopped'),
    shutDownConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'SHUTDOWN' });
    }),
    forceCloseConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'FORCE_CLOSE' });
    }),
    emitStopped: emit({ type: 'pool.health', up: 0, workers: 0 } satisfies SupervisorEmitted),
  },
});
