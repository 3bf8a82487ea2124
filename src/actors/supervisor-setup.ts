// What the supervisor's chart (supervisor.ts) names: its actors, delays,
// guards and actions. The chart says when each runs; this says what it
// does, at length where that is a line or two, and through jobs.ts,
// pool-health.ts, dispatch.ts and outbox-feeder.ts where it is more.
import { assertEvent, emit, enqueueActions, or, setup, stateIn, type GuardPredicate } from 'xstate';
import { backoffDelay } from '../lib/backoff.js';
import { traceQueued } from '../lib/tracing.js';
import { dispatch, fail, room, sweepQueue } from './dispatch.js';
import * as story from './jobs.js';
import { claimedJobs, outboxFeeder, type OutboxOrder } from './outbox-feeder.js';
import * as poolHealth from './pool-health.js';
import { smtpConnectionMachine } from './smtp-connection.js';
import { feed, ticker } from './supervisor-feed.js';
import { isSlowDown } from '../smtp/relay-pace.js';
import type { ChildError, SupervisorContext, SupervisorEmitted, SupervisorEvent, SupervisorInput } from './supervisor-context.js';

/**
 * The states an action asks about (enqueueActions' check): xstate types
 * stateIn for transitions, not for check, so its guard type is narrowed here.
 */
type StateGuard = GuardPredicate<SupervisorContext, SupervisorEvent, undefined, never>;
const SERVING = stateIn('#supervisor.running.delivery.serving') as unknown as StateGuard;
/** the outbox may be given room: not once the drain began */
const OFFERING = or([stateIn('#supervisor.running.delivery.starting'), stateIn('#supervisor.running.delivery.serving')]) as unknown as StateGuard;
/** no connection has come up yet: the first dials, or every one since failed */
const UNREACHED = or([stateIn('#supervisor.running.delivery.starting'), stateIn('#supervisor.running.delivery.serving.pool.never')]) as unknown as StateGuard;

/** a failed outbox store is probed again after a backoff from this */
const STORE_BACKOFF_BASE_MS = 100;

export function connectionInput(context: Pick<SupervisorContext, 'options' | 'log'>, cid: string) {
  return { cid, options: context.options.connection, log: context.log.child({ cid }) };
}

/** What xstate's enqueueActions offers these actions. */
interface Enqueue {
  sendTo(target: 'outbox', event: OutboxOrder): void;
}

/** The relay as the outbox's deferred messages tell it: why the last dial failed, and when the next one is. */
function relayAway(context: SupervisorContext): OutboxOrder {
  const { host, port } = context.options.connection.session;
  const reason = context.lastDown?.error.message ?? 'unreachable';
  const retryAt = context.pool.nextDial ?? context.now() + context.options.connection.backoffBaseMs;
  return { type: 'relay', away: { errorCode: 'EUNAVAILABLE', response: `relay ${host}:${port}: ${reason}`, retryAt } };
}

/** Tells the outbox child the room the connections have now (none once draining) and the outcomes to record. */
function feedOutbox(context: SupervisorContext, enqueue: Enqueue, offering: () => boolean): void {
  if (context.outbox === undefined) return;
  const free = room(context);
  // Most events change neither: no state check for them (it costs more than the rest of this).
  if (context.changes.length === 0 && free === context.offered) return;
  const now = free > 0 && !offering() ? 0 : free;
  if (context.changes.length === 0 && now === context.offered) return;
  const changes = context.changes;
  context.changes = [];
  context.offered = now;
  enqueue.sendTo('outbox', { type: 'offer', room: now, seen: context.seenClaim, changes });
}

export const supervisorSetup = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: { connection: smtpConnectionMachine, outbox: outboxFeeder, feed, ticker },
  delays: {
    shutdownTimeout: ({ context }) => context.shutdownTimeoutMs,
    closeTimeout: ({ context }) => context.options.closeTimeoutMs,
    unreachableAfter: ({ context }) => context.options.unreachableAfterMs,
    /** a failed store waits this long before it is probed again */
    storeBackoff: ({ context }) => backoffDelay(context.storeFailures, STORE_BACKOFF_BASE_MS, context.outbox?.settings.storeBackoffMaxMs ?? 5000),
  },
  guards: {
    allUp: ({ context }) => context.pool.up === context.options.workers,
    partlyUp: ({ context }) => context.pool.up > 0 && context.pool.up < context.options.workers,
    noneUp: ({ context }) => context.pool.up === 0,
    allTried: ({ context }) => context.pool.allTried,
    /** no connection is up, and every one's last dial found the relay unreachable or refusing us */
    allRefused: ({ context }) => context.pool.unreachable,
    /** calls fail at once: the relay was never reached, or has been away SMTP_UNREACHABLE_AFTER_MS, and every dial is refused */
    relayGone: or([stateIn('#supervisor.running.delivery.serving.pool.never.unreachable'), stateIn('#supervisor.running.delivery.serving.pool.down.unreachable')]),
    backlog: ({ context }) => context.ledger.queued > 0,
    slowedDown: ({ context }) => context.pace.throttled,
    drained: ({ context }) => context.ledger.empty,
    allClosed: ({ context }) => context.pool.allClosed,
    reportsUp: ({ event }) => event.type === 'outbox.health' && event.up,
    reportsDown: ({ event }) => event.type === 'outbox.health' && !event.up,
    probed: ({ event }) => event.type === 'outbox.probed' && event.ok,
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
      story.returnOrFail(context, event.jobs, poolHealth.unreachableError(context));
    },
    /** Queued jobs to connections with room; an outbox job that none can start now goes back to its store (SENDING means held). */
    dispatch: enqueueActions(({ context, enqueue }) => {
      dispatch(context, {
        give: (ref, job) => enqueue.sendTo(ref, { type: 'JOB', job }),
        // One tick pending at a time: a later wait replaces it.
        pace: (ms) => {
          enqueue.cancel('pace');
          enqueue.raise({ type: 'tick' }, { delay: ms, id: 'pace' });
        },
      });
      if (context.ledger.queuedDurable > 0) context.changes.push(...story.returnOrFail(context, context.ledger.removeQueued((job) => job.durable !== undefined), ''));
    }),
    feedOutbox: enqueueActions(({ context, enqueue, check }) => feedOutbox(context, enqueue, () => check(OFFERING))),
    sweepQueue: ({ context }) => sweepQueue(context.ledger, context.options.queueTimeoutMs, context.pool.up === 0 ? context.lastDown?.error : undefined),
    markReady: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'conn.ready');
      poolHealth.markReady(context, event, (e) => enqueue.emit(e));
    }),
    noteCapacity: ({ context, event }) => {
      assertEvent(event, ['conn.delivered', 'conn.failed']);
      context.pool.offer(event.cid, event.capacity);
    },
    /**
     * A connection is down or its dial failed. Until the relay was first
     * reached, its reason is said once per kind (a refused certificate or
     * credentials, a wrong host would otherwise show only in debug lines);
     * with no connection up, due outbox messages wait as DEFERRED, saying
     * why and until the next dial.
     */
    markDown: enqueueActions(({ context, event, enqueue, check }) => {
      assertEvent(event, 'conn.down');
      const unreached = check(UNREACHED);
      if (unreached && event.error.code !== context.lastDown?.error.code) context.log.warn('cannot reach the SMTP relay', { code: event.error.code, reason: event.error.message });
      poolHealth.markDown(context, event, (e) => enqueue.emit(e));
      // A relay that hung up saying "too many" is there, and asked us to wait a little, not for the next dial.
      if (context.pool.up === 0 && context.outbox !== undefined && (unreached || check(SERVING)) && !isSlowDown(event.error)) enqueue.sendTo('outbox', relayAway(context));
    }),
    markClosed: ({ context, event }) => {
      assertEvent(event, ['conn.closed', 'conn.respawn']);
      context.pool.closed(event.cid);
    },
    emitPace: emit(({ context }): SupervisorEmitted => ({ type: 'relay.pace', perSecond: context.pace.perSecond, slowed: context.pace.throttled })),
    logPoolUp: ({ context }) => context.log.info('pool up', { up: context.pool.up, workers: context.options.workers }),
    logPoolDown: ({ context }) => poolHealth.logPoolDown(context),
    /** Queued jobs cannot go out before a dial succeeds: a caller's fail now with why; an outbox job goes back to QUEUED. */
    giveUpQueued: ({ context }) => void context.changes.push(...story.returnOrFail(context, context.ledger.removeQueued(() => true), poolHealth.unreachableError(context))),
    /** Each turn of a job's story (jobs.ts), with its effects: outcomes recorded in the outbox, retries timed. */
    story: enqueueActions(({ context, event, enqueue }) => {
      const effects: story.JobEffects = {
        record: (change) => context.changes.push(change),
        retryIn: (job, ms) => enqueue.raise({ type: 'job.retry', job }, { delay: ms }),
        attempted: (job, error) => enqueue.emit({ type: 'outbox.attempted', job, error }),
      };
      switch (event.type) {
        case 'conn.delivered':
          context.pace.delivered(Date.now());
          story.delivered(context, event, effects);
          break;
        case 'conn.failed':
          if (isSlowDown(event.error)) {
            story.slowedDown(context, event);
            break;
          }
          story.countAttempt(event);
          if (story.isStale(context, event)) story.requeueStale(context, event);
          else if (story.isWorthRetrying(context, event)) story.scheduleRetry(context, event, effects);
          else story.endOrDefer(context, event, effects);
          break;
        case 'conn.returned':
          // It could not carry it: it has no room beyond what it holds, whatever it said before.
          story.takeBack(context, event.jobs);
          context.pool.offer(event.cid, context.ledger.holding(event.cid));
          break;
        case 'conn.down':
          // What the ledger still has it holding never reached the relay (its outcomes came before the loss).
          context.ledger.reclaim(event.cid);
          // A relay that hangs up saying "too many" is asking the same as one that refuses a message so.
          if (isSlowDown(event.error) && context.pace.slowDown(Date.now())) context.log.warn('the relay closed, asking us to slow down', { cid: event.cid, perSecond: context.pace.perSecond });
          break;
        case 'job.retry':
          context.ledger.retryDue(event.job); // false: shutdown failed it meanwhile
          break;
        default:
      }
    }),
    /** Once the connections are closing, a job given back has nowhere to go. */
    giveUpReturned: ({ context, event }) => {
      assertEvent(event, ['conn.returned', 'conn.down', 'conn.closed']);
      context.changes.push(...story.returnOrFail(context, event.type === 'conn.returned' ? event.jobs : context.ledger.forfeit(event.cid), 'the service stopped; the relay had not confirmed the message'));
    },
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
      context.changes.push(...story.returnOrFail(context, context.ledger.forfeit(cid), 'the service stopped; the relay had not confirmed the message'));
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
    admitClaimed: ({ context, event }) => {
      assertEvent(event, 'outbox.claimed');
      context.seenClaim = event.seq;
      context.offered = Math.max(0, context.offered - event.claimed.length);
      for (const job of claimedJobs(event.claimed)) {
        context.ledger.admit(job);
        traceQueued(job.trace);
      }
    },
    /** Claimed while the service began to stop: back to QUEUED for the next start. */
    releaseClaimed: ({ context, event }) => {
      assertEvent(event, 'outbox.claimed');
      context.seenClaim = event.seq;
      const at = context.now();
      for (const c of event.claimed) context.changes.push({ id: c.id, event: 'RELEASE', at });
    },
    /** The relay is back: what waited out a deferral for its absence is due now, and drains at the pool's speed. */
    relayBack: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'relay', away: undefined });
    }),
    probeStore: enqueueActions(({ context, enqueue }) => {
      if (context.outbox !== undefined) enqueue.sendTo('outbox', { type: 'probe' });
    }),
    noteStoreFailure: ({ context }) => {
      context.storeFailures += 1;
    },
    noteStoreRecovered: ({ context }) => {
      context.storeFailures = 0;
      context.log.info('outbox: the store is up again');
    },
    logStoreDown: ({ context, event }) => {
      const error = event.type === 'outbox.health' || event.type === 'outbox.probed' ? event.error : undefined;
      context.log.error('outbox: the store is failing; queued mail waits, SYNC mail and codes go on', { code: error?.code, reason: error?.message, probes: context.storeFailures });
    },
    emitStoreUp: emit({ type: 'outbox.health', up: true, error: undefined } satisfies SupervisorEmitted),
    emitStoreDown: emit(({ event }): SupervisorEmitted => ({ type: 'outbox.health', up: false, error: event.type === 'outbox.health' || event.type === 'outbox.probed' ? event.error : undefined })),
    // ---- shutdown
    startDrain: ({ context, event }) => {
      assertEvent(event, 'shutdown');
      context.shutdownTimeoutMs = event.timeoutMs;
      context.log.info('draining', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
    },
    /** Outbox jobs not yet with a connection wait for the next start, where they are. */
    releaseQueuedDurable: ({ context }) => void context.changes.push(...story.returnOrFail(context, context.ledger.removeQueued((job) => job.durable !== undefined), '')),
    /**
     * The deadline passed: the jobs no connection holds are given up (none
     * has reached the relay). A message in flight may already be with the
     * relay: failing it would tell its caller UNAVAILABLE for mail that goes
     * out, and a retry would send it twice; its connection finishes it.
     */
    giveUpWaiting: ({ context }) => {
      context.log.warn('shutdown deadline passed', { queued: context.ledger.queued, inflight: context.ledger.heldCount });
      context.changes.push(...story.returnOrFail(context, context.ledger.takeWaiting(), 'the service shut down before the message could be sent'));
    },
    /** Stopped: whatever still waits (nothing, unless the connections closed on their own) is given up; the next start queues outbox jobs again. */
    giveUpAll: ({ context }) => void story.returnOrFail(context, context.ledger.takeWaiting(), 'the service stopped'),
    shutDownConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'SHUTDOWN' });
    }),
    forceCloseConnections: enqueueActions(({ context, enqueue }) => {
      for (const ref of context.pool.refs()) enqueue.sendTo(ref, { type: 'FORCE_CLOSE' });
    }),
    emitStopped: emit({ type: 'pool.health', up: 0, workers: 0 } satisfies SupervisorEmitted),
  },
});
