// The pool: owns WORKERS connection actors, the job stream, and the
// delivery of the outbox.
//
//   running ──────────────────────────────────────────────► closing ──all closed──► stopped
//     starting ──first dials ended──► serving ──shutdown──► draining ──drained or deadline──┘
//
//   serving, in three regions at once:
//     pool:   never (dialling ⇄ unreachable) ──► up ⇄ degraded ⇄ down (redialling ──SMTP_UNREACHABLE_AFTER_MS──► overdue ⇄ unreachable)
//     jobs:   idle ⇄ flowing ⇄ backlogged
//     outbox: opening ──► up ⇄ failing ⇄ recovering      the store's health; a failing store is probed after a backoff
//
// A job's story, and what the connections report, is one table on
// `running`: the same whatever the pool does; draining refuses new jobs,
// and closing only takes jobs back. A job is in exactly one place
// (job-ledger.ts), and a connection owns the jobs it holds until it
// reports their outcomes. This file is the chart; what its actions and
// guards do is supervisor-setup.ts (at length: jobs.ts for each turn of a
// job's story, pool-health.ts, dispatch.ts, outbox-feeder.ts). A job a
// caller waits on is answered; one from the outbox has its outcome handed
// to the `outbox` child, with the room the connections have, and it claims
// only that much (SENDING means held). Context holds mutable collections
// owned by this actor alone: copying a queue of thousands of jobs on every
// event would make each job cost O(n).
import { not, type ActorRefFrom } from 'xstate';
import { RelayPace } from '../smtp/relay-pace.js';
import { JobLedger } from './job-ledger.js';
import { Pool } from './pool.js';
import type { SmtpConnectionActor } from './smtp-connection.js';
import { connectionInput, supervisorSetup } from './supervisor-setup.js';

export type { PoolSettings, SupervisorEvent, SupervisorInput, SupervisorOptions } from './supervisor-context.js';

/** what an outcome does: its story, the connection's capacity, the queue, the outbox told */
const OUTCOME = ['story', 'noteCapacity', 'dispatch', 'feedOutbox'] as const;

export const supervisorMachine = supervisorSetup.createMachine({
  id: 'supervisor',
  context: ({ input, spawn }) => {
    const { options, log } = input;
    const ledger = new JobLedger(options.bulkShare);
    const pool = new Pool(ledger);
    for (let i = 1; i <= options.workers; i++) {
      const cid = `c${i}`;
      pool.add(cid, spawn('connection', { id: cid, input: connectionInput({ options, log }, cid) }) as SmtpConnectionActor);
    }
    return {
      options,
      log,
      jobs$: input.jobs$,
      outbox: input.outbox,
      now: input.now ?? Date.now,
      ledger,
      pool,
      pace: new RelayPace(options.rateLimitPerSecond, options.paceRecoverMs, Date.now()),
      lastDown: undefined,
      shutdownTimeoutMs: 0,
      offered: 0,
      seenClaim: 0,
      changes: [],
      storeFailures: 0,
    };
  },
  invoke: [
    { id: 'feed', src: 'feed', input: ({ context }) => ({ jobs$: context.jobs$ }) },
    { id: 'ticker', src: 'ticker', input: ({ context }) => ({ ms: Math.max(50, Math.min(1000, context.options.queueTimeoutMs / 4)), event: { type: 'sweep' } }) },
    {
      id: 'outbox',
      src: 'outbox',
      input: ({ context }) => ({ store: context.outbox?.store, log: context.log, now: context.now, retentionMs: context.outbox?.settings.retentionMs ?? 0, simulator: context.outbox?.simulator }),
    },
  ],
  initial: 'running',
  states: {
    running: {
      type: 'parallel',
      states: {
        delivery: {
          // The job table, once: a region below that handles one of these events instead (none does) would shadow it.
          on: {
            'jobs.submitted': [{ guard: 'relayGone', actions: 'refuseUnreachable' }, { actions: ['admitJobs', 'dispatch', 'feedOutbox'] }],
            'conn.ready': { actions: ['markReady', 'dispatch', 'feedOutbox'] },
            'conn.delivered': { actions: OUTCOME },
            'conn.failed': { actions: OUTCOME },
            'conn.returned': { actions: ['story', 'dispatch', 'feedOutbox'] },
            'conn.down': { actions: ['markDown', 'story', 'dispatch', 'feedOutbox'] },
            'job.retry': [{ guard: 'relayGone', actions: ['story', 'giveUpQueued', 'feedOutbox'] }, { actions: ['story', 'dispatch', 'feedOutbox'] }],
            tick: { actions: ['dispatch', 'feedOutbox'] },
            'outbox.claimed': { actions: ['admitClaimed', 'dispatch', 'feedOutbox'] },
            sweep: { actions: 'sweepQueue' },
            'xstate.error.actor.*': { actions: ['recoverCrash', 'dispatch', 'feedOutbox'] },
            'conn.respawn': { actions: 'respawn' },
            shutdown: { target: '.draining', actions: 'startDrain' },
          },
          initial: 'starting',
          states: {
            starting: {
              always: [
                { guard: 'allUp', target: 'serving.pool.up' },
                { guard: 'partlyUp', target: 'serving.pool.degraded' },
                { guard: 'allTried', target: 'serving.pool.never' },
              ],
            },
            serving: {
              type: 'parallel',
              states: {
                pool: {
                  // entered through starting's choice; `never` only names a default
                  initial: 'never',
                  states: {
                    // No connection has come up yet: calls wait for the first dials, or fail at once when every one is refused.
                    never: {
                      exit: 'relayBack',
                      always: [
                        { guard: 'allUp', target: 'up' },
                        { guard: 'partlyUp', target: 'degraded' },
                      ],
                      initial: 'dialling',
                      states: {
                        dialling: { always: { guard: 'allRefused', target: 'unreachable' } },
                        // new jobs are refused at once (the running table's guard)
                        unreachable: { entry: ['giveUpQueued', 'feedOutbox'] },
                      },
                    },
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
                      entry: 'logPoolDown',
                      exit: 'relayBack',
                      always: [
                        { guard: 'allUp', target: 'up' },
                        { guard: 'partlyUp', target: 'degraded' },
                      ],
                      initial: 'redialling',
                      states: {
                        // Connections dial again after a loss or a handshake cut short: calls wait for them.
                        redialling: { after: { unreachableAfter: 'overdue' } },
                        // The outage has lasted SMTP_UNREACHABLE_AFTER_MS: once every dial is refused, calls fail at once.
                        overdue: { always: { guard: 'allRefused', target: 'unreachable' } },
                        unreachable: { entry: ['giveUpQueued', 'feedOutbox'] },
                      },
                    },
                  },
                },
                jobs: {
                  // What the queue does; the job traffic is the same whatever it does.
                  initial: 'idle',
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
                relay: {
                  // How fast the relay lets us send (relay-pace.ts): the pace is in the story's hands, this names it.
                  initial: 'steady',
                  states: {
                    // at the configured pace (SEND_RATE_LIMIT_PER_SECOND, or none)
                    steady: { always: { guard: 'slowedDown', target: 'slowed', actions: 'emitPace' } },
                    // the relay asked us to slow down: the pace climbs back while its replies are clean
                    slowed: { always: { guard: not('slowedDown'), target: 'steady', actions: 'emitPace' } },
                  },
                },
              },
            },
            draining: {
              entry: ['releaseQueuedDurable', 'feedOutbox'],
              after: { shutdownTimeout: { target: '#supervisor.closing', actions: ['giveUpWaiting', 'feedOutbox'] } },
              always: { guard: 'drained', target: '#supervisor.closing' },
              on: {
                'jobs.submitted': { actions: 'refuseJobs' },
                'outbox.claimed': { actions: ['releaseClaimed', 'feedOutbox'] },
                shutdown: {},
              },
            },
          },
        },
        outbox: {
          initial: 'opening',
          states: {
            // until the store first says whether it can write
            opening: {
              on: {
                'outbox.health': [
                  { guard: 'reportsUp', target: 'up' },
                  { target: 'failing', actions: 'noteStoreFailure' },
                ],
              },
            },
            up: {
              entry: 'emitStoreUp',
              on: { 'outbox.health': { guard: 'reportsDown', target: 'failing', actions: 'noteStoreFailure' } },
            },
            // it cannot write: queued mail waits, new queued mail is refused; probed again after a backoff
            failing: {
              entry: ['emitStoreDown', 'logStoreDown'],
              after: { storeBackoff: 'recovering' },
            },
            recovering: {
              entry: 'probeStore',
              on: {
                'outbox.probed': [
                  { guard: 'probed', target: 'up', actions: 'noteStoreRecovered' },
                  { target: 'failing', actions: 'noteStoreFailure' },
                ],
              },
            },
          },
        },
      },
    },
    closing: {
      entry: 'shutDownConnections',
      after: { closeTimeout: { actions: 'forceCloseConnections' } },
      always: { guard: 'allClosed', target: 'stopped' },
      on: {
        'jobs.submitted': { actions: 'refuseJobs' },
        'outbox.claimed': { actions: ['releaseClaimed', 'feedOutbox'] },
        // The connections finish what they hold before they QUIT.
        'conn.delivered': { actions: ['story', 'feedOutbox'] },
        'conn.failed': { actions: ['story', 'feedOutbox'] },
        'conn.returned': { actions: ['giveUpReturned', 'feedOutbox'] },
        'conn.down': { actions: ['markDown', 'giveUpReturned', 'feedOutbox'] },
        'conn.closed': { actions: ['markClosed', 'giveUpReturned', 'feedOutbox'] },
        'xstate.error.actor.*': { actions: ['closeCrashed', 'feedOutbox'] },
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
