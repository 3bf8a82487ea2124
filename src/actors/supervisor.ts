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
// holds until it reports their outcomes. This file is the chart; what its
// actions and guards do is supervisor-setup.ts (at length: jobs.ts for each
// turn of a job's story, pool-health.ts, dispatch.ts, outbox-work.ts). A job
// a caller waits on is answered; one from the outbox has its outcome
// recorded, through the `outbox` child, which alone writes the store. Context
// holds mutable collections owned by this actor alone: copying a queue of
// thousands of jobs on every event would make each job cost O(n).
import { not, type ActorRefFrom } from 'xstate';
import { TokenBucket } from '../lib/token-bucket.js';
import { JobLedger } from './job-ledger.js';
import { Pool } from './pool.js';
import type { SmtpConnectionActor } from './smtp-connection.js';
import { connectionInput, OUTBOX_LOOK_MS, supervisorSetup } from './supervisor-setup.js';

export type { PoolSettings, SupervisorEvent, SupervisorInput, SupervisorOptions } from './supervisor-context.js';

export const supervisorMachine = supervisorSetup.createMachine({
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
    { id: 'ticker', src: 'ticker', input: ({ context }) => ({ ms: Math.max(50, Math.min(1000, context.options.queueTimeoutMs / 4)), event: { type: 'sweep' } }) },
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
      on: { shutdown: { target: 'draining', actions: 'startDrain' } },
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
          // What the queue does; the job traffic is the same whatever it does.
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
          invoke: { id: 'housekeeper', src: 'ticker', input: { ms: 5 * OUTBOX_LOOK_MS, event: { type: 'outbox.wake' } } },
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
