// One persistent SMTP connection as a state machine.
//
//               ┌──────────── after backoff ────────────┐
//               ▼                                       │
//   ┌──────► connecting ──dial failed──► reconnecting (refused | failed | lost) ◄── lost ──┐
//   │           │ dialled                                                                 │
//   │           ▼                                                                         │
//   │   authenticated, in two regions:                                                    │
//   │     work:  idle ──JOB──► sending ──last outcome──► settled ──► idle | recycling     │
//   │              │  ▲          └──lost──► ending ──all reported────────────────────────┤
//   │              │  └── pinging (NOOP) ◄──keepalive                                     │
//   │              └──SHUTDOWN──► closing ──QUIT──► closed                                │
//   │            recycling: handingOver (to the successor) | quitting ──► connecting ─────┘
//   │     successor: none ──near the cap──► dialling (the courier dials the next session)
//   └──────────────────────────────────────────────────────────────────────────────────
//
// The connection asks the supervisor for work (conn.ready when a session
// starts, and the capacity it reports with every outcome) and owns each
// job it is given until it reports that job's outcome: delivered, failed,
// or given back unsent. It passes each job to the courier at once (or, with
// a NOOP under way, when the NOOP is answered) and keeps only their count:
// the supervisor's ledger is the one list of what it holds. The courier
// pipelines them and reports each outcome; the one that leaves nothing in
// flight a turn late, so that a relay that closes right behind its 250 is
// seen closing before the connection offers room again. Socket work lives
// in the invoked actors (smtp-connection-setup.ts); transitions only
// assign, log and report.
import type { ActorRefFrom } from 'xstate';
import { connectionSetup, courierInput, current, delivered, failed } from './smtp-connection-setup.js';

export type { ConnectionEvent, ConnectionInput, ConnectionOptions, ConnectionReport, ConnectionSettings } from './smtp-connection-setup.js';

export const smtpConnectionMachine = connectionSetup.createMachine({
  id: 'smtpConnection',
  context: ({ input }) => ({
    cid: input.cid,
    options: input.options,
    log: input.log,
    session: undefined,
    pipelining: false,
    chunking: false,
    depth: input.options.pipelineDepth,
    pending: [],
    inFlight: 0,
    attempt: 0,
    retryMs: 0,
    sent: 0,
    cap: input.options.maxMessagesPerConnection,
    proven: false,
    lastError: undefined,
  }),
  initial: 'connecting',
  on: {
    JOB: { actions: { type: 'returnJob', params: ({ event }) => ({ job: event.job }) } },
    FORCE_CLOSE: { target: '.closed' },
  },
  states: {
    connecting: {
      entry: 'logConnecting',
      invoke: {
        id: 'dial',
        src: 'dial',
        input: ({ context }) => context.options.session,
        onDone: { target: 'authenticated', actions: [{ type: 'startSession', params: ({ event }) => ({ session: event.output, proven: false }) }, 'reportReady'] },
        onError: [
          { guard: 'refusedDial', target: 'reconnecting.refused', actions: { type: 'recordDialFailure', params: ({ event }) => ({ error: event.error }) } },
          { target: 'reconnecting.failed', actions: { type: 'recordDialFailure', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
      on: { SHUTDOWN: 'closed' },
    },
    // The session is up and authenticated: what it does with it, whether a successor is being dialled, and whether it was told to stop.
    authenticated: {
      type: 'parallel',
      invoke: { id: 'courier', src: 'courier', input: ({ context }) => courierInput(context) },
      exit: 'forgetSession',
      on: {
        LOST: [
          { guard: 'stopping', target: 'closed', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
          { target: 'reconnecting.lost', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
      states: {
        work: {
          initial: 'idle',
          states: {
            idle: {
              entry: 'logIdle',
              always: { guard: 'stopping', target: 'closing' },
              after: { keepalive: 'pinging' },
              on: {
                JOB: { target: 'sending', actions: { type: 'deliver', params: ({ event }) => ({ job: event.job }) } },
                SHUTDOWN: 'closing',
              },
            },
            pinging: {
              invoke: {
                id: 'noop',
                src: 'noop',
                input: ({ context }) => current(context),
                // A job that came during the NOOP waited for this moment.
                onDone: [{ guard: 'holdsJobs', target: 'sending', actions: 'deliverPending' }, { target: 'idle' }],
                onError: [
                  { guard: 'stopping', target: '#smtpConnection.closed', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
                  { target: '#smtpConnection.reconnecting.lost', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
                ],
              },
              on: {
                // It asked for work before the keepalive came due: the job is its own now.
                JOB: { actions: { type: 'hold', params: ({ event }) => ({ job: event.job }) } },
              },
            },
            sending: {
              on: {
                JOB: [{ guard: 'canCarry', actions: { type: 'deliver', params: ({ event }) => ({ job: event.job }) } }, { actions: { type: 'returnJob', params: ({ event }) => ({ job: event.job }) } }],
                SENT: [{ guard: 'lastHeld', target: 'settled', actions: delivered(true) }, { actions: delivered(true) }],
                // A refusal leaves the session usable (the courier sent RSET where a transaction was open).
                SEND_FAILED: [{ guard: 'lastHeld', target: 'settled', actions: failed(true) }, { actions: failed(true) }],
                // The relay is gone: the courier fails what was under way, each with its own outcome.
                LOST: { target: 'ending', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
              },
            },
            // Its last outcome is reported (with the capacity it has now): spent, winding down, or idle.
            settled: {
              always: [{ guard: 'spent', target: 'recycling' }, { guard: 'stopping', target: 'closing' }, { target: 'idle' }],
            },
            // The session is gone; the outcomes of what was under way come in, then it reconnects.
            ending: {
              // Lost while finishing its last jobs after SHUTDOWN: no point dialling again.
              always: [
                { guard: 'doneStopping', target: '#smtpConnection.closed' },
                { guard: 'allReported', target: '#smtpConnection.reconnecting.lost' },
              ],
              on: {
                // Granted on the room it reported before the loss: it never reaches the relay, and goes back with conn.down.
                JOB: { actions: { type: 'hold', params: ({ event }) => ({ job: event.job }) } },
                SENT: { actions: delivered(false) },
                SEND_FAILED: { actions: failed(false) },
                LOST: {},
              },
            },
            recycling: {
              // Providers cap messages per connection; a fresh session is routine.
              // The old one, drained, goes (QUIT) either way; the question is
              // whether its successor is already dialled.
              entry: 'logRecycling',
              initial: 'deciding',
              on: { LOST: {} },
              states: {
                deciding: {
                  always: [{ guard: 'predialing', target: 'handingOver' }, { target: 'quitting' }],
                },
                handingOver: {
                  entry: 'handOver',
                  on: {
                    HANDED_OVER: {
                      target: '#smtpConnection.authenticated.work.idle',
                      actions: [{ type: 'startSession', params: ({ event }) => ({ session: event.session, proven: true }) }, 'reportReady'],
                    },
                    NO_SUCCESSOR: { target: 'quitting', actions: { type: 'logNoSuccessor', params: ({ event }) => ({ error: event.error }) } },
                  },
                },
                quitting: {
                  invoke: {
                    id: 'quit',
                    src: 'quit',
                    input: ({ context }) => current(context),
                    onDone: [{ guard: 'stopping', target: '#smtpConnection.closed' }, { target: '#smtpConnection.connecting' }],
                    onError: '#smtpConnection.connecting',
                  },
                },
              },
            },
            closing: {
              invoke: {
                id: 'quit',
                src: 'quit',
                input: ({ context }) => current(context),
                onDone: '#smtpConnection.closed',
                onError: '#smtpConnection.closed',
              },
              on: { LOST: '#smtpConnection.closed' },
            },
          },
        },
        successor: {
          initial: 'none',
          states: {
            // Near the cap the courier dials the next session while this one still sends.
            none: { on: { SENT: { guard: 'predialDue', target: 'dialling' } } },
            dialling: { entry: 'predial', on: { HANDED_OVER: 'none' } },
          },
        },
        intent: {
          initial: 'serving',
          states: {
            serving: { on: { SHUTDOWN: 'stopping' } },
            // Told to SHUTDOWN: it takes no more work, finishes what it holds, and QUITs.
            stopping: {},
          },
        },
      },
    },
    reconnecting: {
      entry: ['planRetry', 'logReconnecting', 'dropHeld'],
      after: { backoff: 'connecting' },
      on: { SHUTDOWN: 'closed' },
      initial: 'lost',
      states: {
        // the session was lost (or its NOOP failed)
        lost: { entry: { type: 'reportDown', params: { refused: false } } },
        // the dial failed (a handshake cut short, a timeout on the way)
        failed: { entry: { type: 'reportDown', params: { refused: false } } },
        // the dial found the relay unreachable or refusing us
        refused: { entry: { type: 'reportDown', params: { refused: true } } },
      },
    },
    closed: {
      type: 'final',
      // Leaving `authenticated` or `connecting` already stopped the actor that held the socket.
      entry: ['logClosed', 'reportClosed', 'dropHeld'],
    },
  },
});

export type SmtpConnectionActor = ActorRefFrom<typeof smtpConnectionMachine>;
