// One persistent SMTP connection as a state machine.
//
//               ┌──────────── after backoff ────────────┐
//               ▼                                       │
//   ┌──────► connecting ──dial failed──────────► reconnecting ◄─── lost ───┐
//   │           │ dialled                                ▲                 │
//   │           ▼                                        │ all reported    │
//   │   authenticated ───────────────────────────────────┼─────────────────┤
//   │   │ idle ──JOB──► sending ──lost──► ending ────────┘                 │
//   │   │  │  ▲  ▲        │ all reported                                   │
//   │   │  │  │  └────── settling ──spent──► recycling                     │
//   │   │  │  │                                │ successor dialled ahead?  │
//   │   │  │  └──── yes: handed over ◄─────────┤                           │
//   │   │  │                             no: QUIT ─────────────────────────┼─┐
//   │   │  └─keepalive─► pinging (NOOP) ──► idle | sending                 │ │
//   │   │ idle + SHUTDOWN ──► closing ── QUIT ──► closed                   │ │
//   │   └──────────────────────────────────────────────────────────────────┘ │
//   └──────────────────────────────────────────────────────────────────────────┘
//
// The connection asks the supervisor for work (conn.ready, and the capacity
// it reports with every outcome) and owns each job it is given until it
// reports that job's outcome: delivered, failed, or given back unsent. With
// PIPELINING it asks for a second job while the first is under way, and the
// courier sends that one's envelope right behind the first one's dot.
// Socket work lives in the invoked actors; transitions only assign, log and
// report. One file over 300 lines because a machine is one setup() and one
// createMachine() expression, typed as a whole; the socket work it invokes
// is in src/smtp.
import { assign, enqueueActions, fromCallback, fromPromise, sendParent, sendTo, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError, type SmtpReply } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import { Courier, type CourierOptions, type CourierReport, type CourierRequest } from '../smtp/courier.js';
import { dial, relayRefused } from '../smtp/dial.js';
import type { SessionOptions } from '../smtp/options.js';
import type { SmtpSession } from '../smtp/session.js';
import { backoffDelay } from '../lib/backoff.js';
import { sessionCap } from '../smtp/session-cap.js';

/** How each connection keeps, recycles and redials its session (config.smtp.connection). */
export interface ConnectionSettings {
  readonly keepaliveMs: number;
  readonly maxMessagesPerConnection: number;
  /** messages in flight on one connection when the relay offers CHUNKING and PIPELINING, at no distance and at least */
  readonly pipelineDepth: number;
  /** and at most: the depth follows the relay's round trip up to this (see smtp/pace.ts) */
  readonly pipelineDepthMax: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface ConnectionOptions extends ConnectionSettings {
  readonly session: SessionOptions;
}

export interface ConnectionInput {
  readonly cid: string;
  readonly options: ConnectionOptions;
  readonly log: Logger;
}

export type ConnectionEvent =
  | { type: 'JOB'; job: MailJob }
  /** finish the jobs in hand, QUIT, close */
  | { type: 'SHUTDOWN' }
  /** drop the socket now: the shutdown deadline has passed */
  | { type: 'FORCE_CLOSE' }
  // from the courier, which holds the session and performs the deliveries
  | CourierReport;

interface CourierInput {
  readonly session: SmtpSession;
  readonly options: CourierOptions;
}

/**
 * What a connection tells its supervisor. `capacity` is how many jobs it
 * could hold at that moment, those it holds included; the supervisor, which
 * knows what it handed out, gives the difference.
 */
export type ConnectionReport =
  | { type: 'conn.ready'; cid: string; capacity: number }
  | { type: 'conn.delivered'; cid: string; job: MailJob; reply: SmtpReply; capacity: number }
  | { type: 'conn.failed'; cid: string; job: MailJob; error: MailroomError; capacity: number }
  /** jobs it could not carry, untouched */
  | { type: 'conn.returned'; cid: string; jobs: readonly MailJob[] }
  /**
   * the session is gone, or a dial failed; `refused`: that dial found the
   * relay unreachable or refusing us (see relayRefused); `returned`: jobs it
   * held that never reached the relay
   */
  | { type: 'conn.down'; cid: string; error: MailroomError; refused: boolean; returned: readonly MailJob[]; retryAt: number }
  /** final; `returned`: jobs it held when it was forced closed */
  | { type: 'conn.closed'; cid: string; returned: readonly MailJob[] };

interface ConnectionContext {
  readonly cid: string;
  readonly options: ConnectionOptions;
  readonly log: Logger;
  session: SmtpSession | undefined;
  /** the relay pipelines (RFC 2920): a second job's envelope can go out behind the first one's dot */
  pipelining: boolean;
  /** and takes BDAT (RFC 3030): whole messages go out back to back, `depth` of them in flight */
  chunking: boolean;
  /** whole messages to keep in flight: what the courier last measured the round trip to need */
  depth: number;
  /** the jobs this connection owns, oldest first: outcomes come in this order */
  readonly held: MailJob[];
  /** how many of `held` went to the courier */
  submitted: number;
  /** consecutive failed dials */
  attempt: number;
  /** how long it waits before it dials again, set as it begins to wait */
  retryMs: number;
  /** messages the relay took part in on the current session */
  sent: number;
  /** messages the current session may carry (see sessionCap) */
  cap: number;
  /** the courier was asked to dial the next session ahead of the cap */
  predialing: boolean;
  /** the relay has carried several messages on one session of this connection: no need to start the next one at one job */
  proven: boolean;
  lastError: MailroomError | undefined;
  /** its last dial found the relay unreachable or refusing us (not a session lost, not a handshake cut short) */
  refused: boolean;
  shutdownRequested: boolean;
}

/** The session a state invokes against; every state that has one is under `authenticated`. */
function current(context: ConnectionContext): SmtpSession {
  if (context.session === undefined) throw new MailroomError('EINTERNAL', 'no session in a connected state');
  return context.session;
}

/**
 * How many jobs the connection can hold now: one, until the session has
 * carried a message (a relay that closes after every message would fail
 * the second for nothing); then two when the relay pipelines (one sending,
 * the next one's envelope behind its dot), or SMTP_PIPELINE_DEPTH when it
 * also takes BDAT; never more than the session's cap has room for.
 */
function capacity(context: ConnectionContext): number {
  const depth = !context.pipelining || (context.sent < 1 && !context.proven) ? 1 : context.chunking ? context.depth : 2;
  return Math.max(0, Math.min(depth, context.cap - context.sent));
}

/** What an outcome report offers: nothing once the connection winds down or has nothing left (it settles first). */
function capacityAfter(context: ConnectionContext, more: boolean): number {
  return !more || context.shutdownRequested || context.held.length === 0 ? 0 : capacity(context);
}

/** Sessions this short are re-dialled as before: dialling ahead for them would double the connections. */
const PREDIAL_MIN_CAP = 10;

/**
 * The successor is dialled this many messages before the cap: enough for a
 * dial's five or six round trips at four messages a round trip, and no more
 * than a quarter of a session.
 */
function predialDue(context: ConnectionContext): boolean {
  const { cap, sent } = context;
  return cap >= PREDIAL_MIN_CAP && sent >= cap - Math.min(25, Math.floor(cap / 4));
}

type Sent = Extract<ConnectionEvent, { type: 'SENT' }>;
type SendFailed = Extract<ConnectionEvent, { type: 'SEND_FAILED' }>;

/** The actions of an outcome: count it toward the session's cap, let go of the job, report it (offering more capacity or not). */
const delivered = (more: boolean) =>
  [
    { type: 'countSent', params: () => ({}) },
    { type: 'learnDepth', params: ({ event }: { event: Sent }) => ({ depth: event.depth }) },
    ...(more ? (['predialNearCap'] as const) : []),
    { type: 'letGo', params: ({ event }: { event: Sent }) => ({ job: event.job }) },
    { type: 'reportDelivered', params: ({ event }: { event: Sent }) => ({ job: event.job, reply: event.reply, more }) },
  ] as const;
const failed = (more: boolean) =>
  [
    { type: 'countSent', params: ({ event }: { event: SendFailed }) => ({ error: event.error }) },
    ...(more ? (['predialNearCap'] as const) : []),
    { type: 'letGo', params: ({ event }: { event: SendFailed }) => ({ job: event.job }) },
    { type: 'reportFailed', params: ({ event }: { event: SendFailed }) => ({ job: event.job, error: event.error, more }) },
  ] as const;

export const smtpConnectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  actors: {
    dial: fromPromise<SmtpSession, SessionOptions>(({ input, signal }) => dial(input, signal)),
    noop: fromPromise<void, SmtpSession>(({ input }) => input.noop()),
    quit: fromPromise<void, SmtpSession>(({ input }) => input.quit()),
    // Holds the session while connected (see Courier): one long-lived actor
    // performs every delivery, one outcome event each: an actor spawned and
    // stopped per mail cost more than the mail (docs/decisions.md).
    courier: fromCallback<CourierRequest, CourierInput>(({ input, sendBack, receive }) => {
      const courier = new Courier(input.session, input.options, sendBack);
      receive((request) => courier.handle(request));
      return () => courier.close();
    }),
  },
  delays: {
    keepalive: ({ context }) => context.options.keepaliveMs,
    backoff: ({ context }) => context.retryMs,
  },
  guards: {
    spent: ({ context }) => context.sent >= context.cap,
    predialing: ({ context }) => context.predialing,
    shutdownRequested: ({ context }) => context.shutdownRequested,
    holdsJobs: ({ context }) => context.held.length > 0,
    holdsNothing: ({ context }) => context.held.length === 0,
    /** the outcome being reported is of the last job held */
    lastHeld: ({ context }) => context.held.length === 1,
    canCarry: ({ context }) => context.held.length < capacity(context),
  },
  actions: {
    // The per-mail bookkeeping mutates the context in place: assign() copies
    // the whole context each time, several copies per mail on the hot path.
    // Nothing else holds the old context: the machine is its only reader.
    hold: ({ context }, params: { job: MailJob }) => {
      context.held.push(params.job);
    },
    /** Every held job not yet with the courier goes to it, oldest first. */
    deliverHeld: enqueueActions(({ context, enqueue }) => {
      while (context.submitted < context.held.length) {
        enqueue.sendTo('courier', { type: 'deliver', job: context.held[context.submitted++] as MailJob } satisfies CourierRequest);
      }
    }),
    /**
     * The relay took part in this delivery: it counts toward the session's
     * cap. One the session lost before the relay answered MAIL (ESTALE) does
     * not. (Whose attempt it was is the supervisor's to count.)
     */
    countSent: ({ context }, params: { error?: MailroomError }) => {
      if (params.error?.code !== 'ESTALE') context.sent += 1;
    },
    /** Near the cap, the courier dials the next session while this one still sends (see Courier). */
    predialNearCap: enqueueActions(({ context, enqueue }) => {
      if (context.predialing || !predialDue(context)) return;
      context.predialing = true;
      enqueue.sendTo('courier', { type: 'predial' } satisfies CourierRequest);
    }),
    /** The round trip, as the courier measures it, sets how many whole messages this connection takes at once. */
    learnDepth: ({ context }, params: { depth: number }) => {
      context.depth = params.depth;
    },
    /** The job's outcome is in: the connection no longer holds it (it reports it next). */
    letGo: ({ context }, params: { job: MailJob }) => {
      const i = context.held.indexOf(params.job);
      if (i < 0) throw new MailroomError('EINTERNAL', `connection ${context.cid} has an outcome for job ${params.job.id}, which it does not hold`);
      context.held.splice(i, 1);
      if (i < context.submitted) context.submitted--;
    },
    reportDelivered: sendParent(({ context }, params: { job: MailJob; reply: SmtpReply; more: boolean }): ConnectionReport => ({
      type: 'conn.delivered',
      cid: context.cid,
      job: params.job,
      reply: params.reply,
      capacity: capacityAfter(context, params.more),
    })),
    reportFailed: sendParent(({ context }, params: { job: MailJob; error: MailroomError; more: boolean }): ConnectionReport => ({
      type: 'conn.failed',
      cid: context.cid,
      job: params.job,
      error: params.error,
      capacity: capacityAfter(context, params.more),
    })),
    reportReady: sendParent(({ context }): ConnectionReport => ({ type: 'conn.ready', cid: context.cid, capacity: capacity(context) })),
    /** A job this connection cannot carry now goes straight back, untouched. */
    returnJob: sendParent(({ context }, params: { job: MailJob }): ConnectionReport => ({ type: 'conn.returned', cid: context.cid, jobs: [params.job] })),
    /** Jobs held here never reached the relay (held during a NOOP or while settling): they go back with the report. */
    reportDown: sendParent(({ context }): ConnectionReport => ({
      type: 'conn.down',
      cid: context.cid,
      error: context.lastError ?? new MailroomError('ECONNECTION', 'connection lost'),
      refused: context.refused,
      returned: [...context.held],
      retryAt: Date.now() + context.retryMs,
    })),
    /** How long it waits before it dials again: the backoff for its failed dials in a row; bad credentials do not get better soon, so the cap. */
    planRetry: assign(({ context }) => {
      const { backoffBaseMs, backoffMaxMs } = context.options;
      return { retryMs: context.lastError?.code === 'EAUTH' ? backoffMaxMs : backoffDelay(context.attempt, backoffBaseMs, backoffMaxMs) };
    }),
    reportClosed: sendParent(({ context }): ConnectionReport => ({ type: 'conn.closed', cid: context.cid, returned: [...context.held] })),
    /** Whatever it held went back with its report. */
    dropHeld: ({ context }) => {
      context.held.length = 0;
      context.submitted = 0;
    },
    settle: sendTo('courier', { type: 'settle' } satisfies CourierRequest),
    handOver: sendTo('courier', { type: 'handover' } satisfies CourierRequest),
    /**
     * A session, dialled or handed over by the courier, is the connection's:
     * a fresh cap. `proven`: the relay already took several on one session
     * of this connection (a handed-over successor's predecessor carried at
     * least PREDIAL_MIN_CAP).
     */
    startSession: assign(({ context }, params: { session: SmtpSession; proven: boolean }) => ({
      session: params.session,
      pipelining: params.session.pipelining,
      chunking: params.session.chunking,
      attempt: 0,
      sent: 0,
      submitted: 0,
      cap: sessionCap(context.options.maxMessagesPerConnection),
      predialing: false,
      proven: params.proven,
      lastError: undefined,
      refused: false,
    })),
    recordDialFailure: assign(({ context }, params: { error: unknown }) => ({
      lastError: toMailroomError(params.error),
      attempt: context.attempt + 1,
      refused: relayRefused(params.error),
    })),
    /** The session failed (a loss, a failed NOOP): the next dial is the first of a new series. */
    recordLoss: assign((_, params: { error: unknown }) => ({ lastError: toMailroomError(params.error), attempt: 1, refused: false })),
    forgetSession: assign({ session: undefined }),
    requestShutdown: assign({ shutdownRequested: true }),
    logConnecting: ({ context }) => context.log.debug('connecting', { attempt: context.attempt }),
    logIdle: ({ context }) => context.log.debug('authenticated', { sent: context.sent }),
    logRecycling: ({ context }) => context.log.debug('recycling', { sent: context.sent }),
    logNoSuccessor: ({ context }, params: { error: MailroomError | undefined }) =>
      context.log.debug('no successor session: dialling now', { code: params.error?.code, reason: params.error?.message }),
    logReconnecting: ({ context }) =>
      context.log.debug('reconnecting', { attempt: context.attempt, code: context.lastError?.code, reason: context.lastError?.message }),
    logClosed: ({ context }) => context.log.debug('closed'),
  },
}).createMachine({
  id: 'smtpConnection',
  context: ({ input }) => ({
    cid: input.cid,
    options: input.options,
    log: input.log,
    session: undefined,
    pipelining: false,
    chunking: false,
    depth: input.options.pipelineDepth,
    held: [],
    submitted: 0,
    attempt: 0,
    retryMs: 0,
    sent: 0,
    cap: input.options.maxMessagesPerConnection,
    predialing: false,
    proven: false,
    lastError: undefined,
    refused: false,
    shutdownRequested: false,
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
        onDone: { target: 'authenticated', actions: { type: 'startSession', params: ({ event }) => ({ session: event.output, proven: false }) } },
        onError: { target: 'reconnecting', actions: { type: 'recordDialFailure', params: ({ event }) => ({ error: event.error }) } },
      },
      on: { SHUTDOWN: 'closed' },
    },
    // The session is up and authenticated; its substates say what it is doing.
    authenticated: {
      invoke: {
        id: 'courier',
        src: 'courier',
        input: ({ context }): CourierInput => ({
          session: current(context),
          options: { ...context.options.session, keepaliveMs: context.options.keepaliveMs, pipelineDepth: context.options.pipelineDepth, pipelineDepthMax: context.options.pipelineDepthMax },
        }),
      },
      exit: 'forgetSession',
      on: {
        LOST: { target: 'reconnecting', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
      },
      initial: 'idle',
      states: {
        idle: {
          entry: ['logIdle', 'reportReady'],
          always: { guard: 'shutdownRequested', target: 'closing' },
          after: { keepalive: 'pinging' },
          on: {
            JOB: { target: 'sending', actions: { type: 'hold', params: ({ event }) => ({ job: event.job }) } },
            SHUTDOWN: 'closing',
          },
        },
        pinging: {
          invoke: {
            id: 'noop',
            src: 'noop',
            input: ({ context }) => current(context),
            // A job that came during the NOOP was held for this moment.
            onDone: [{ guard: 'holdsJobs', target: 'sending' }, { target: 'idle' }],
            onError: { target: '#smtpConnection.reconnecting', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
          },
          on: {
            // It asked for work before the keepalive came due: the job is its own now.
            JOB: { actions: { type: 'hold', params: ({ event }) => ({ job: event.job }) } },
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        sending: {
          entry: 'deliverHeld',
          on: {
            JOB: [
              { guard: 'canCarry', actions: [{ type: 'hold', params: ({ event }) => ({ job: event.job }) }, 'deliverHeld'] },
              { actions: { type: 'returnJob', params: ({ event }) => ({ job: event.job }) } },
            ],
            SENT: [
              { guard: 'lastHeld', target: 'settling', actions: delivered(true) },
              { actions: delivered(true) },
            ],
            // A refusal leaves the session usable (the courier sent RSET where a transaction was open).
            SEND_FAILED: [
              { guard: 'lastHeld', target: 'settling', actions: failed(true) },
              { actions: failed(true) },
            ],
            // The relay is gone: the courier fails what was under way, each with its own outcome.
            LOST: { target: 'ending', actions: { type: 'recordLoss', params: ({ event }) => ({ error: event.error }) } },
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        ending: {
          always: { guard: 'holdsNothing', target: '#smtpConnection.reconnecting' },
          on: {
            SENT: { actions: delivered(false) },
            SEND_FAILED: { actions: failed(false) },
            LOST: {},
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        settling: {
          // Relays that close after each message (or after N) send the close
          // right behind the 250: asking for the next job first would fail it
          // for nothing, so the courier answers SETTLED one event-loop turn
          // later. LOST meanwhile leads to reconnecting from `authenticated`.
          entry: 'settle',
          on: {
            // granted on a capacity it reported before its last outcome
            JOB: { actions: { type: 'hold', params: ({ event }) => ({ job: event.job }) } },
            SETTLED: [{ guard: 'holdsJobs', target: 'sending' }, { guard: 'spent', target: 'recycling' }, { target: 'idle' }],
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        recycling: {
          // Providers cap messages per connection; a fresh session is routine.
          // The old one, drained, goes (QUIT) either way; the question is
          // whether its successor is already dialled.
          entry: 'logRecycling',
          initial: 'deciding',
          on: { SHUTDOWN: { actions: 'requestShutdown' }, LOST: {} },
          states: {
            deciding: {
              always: [{ guard: 'predialing', target: 'handingOver' }, { target: 'quitting' }],
            },
            handingOver: {
              entry: 'handOver',
              on: {
                HANDED_OVER: {
                  target: '#smtpConnection.authenticated.idle',
                  actions: { type: 'startSession', params: ({ event }) => ({ session: event.session, proven: true }) },
                },
                NO_SUCCESSOR: { target: 'quitting', actions: { type: 'logNoSuccessor', params: ({ event }) => ({ error: event.error }) } },
              },
            },
            quitting: {
              invoke: {
                id: 'quit',
                src: 'quit',
                input: ({ context }) => current(context),
                onDone: [{ guard: 'shutdownRequested', target: '#smtpConnection.closed' }, { target: '#smtpConnection.connecting' }],
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
    reconnecting: {
      entry: ['planRetry', 'logReconnecting', 'reportDown', 'dropHeld'],
      // Lost while finishing its last jobs after SHUTDOWN: no point dialling again.
      always: { guard: 'shutdownRequested', target: 'closed' },
      after: { backoff: 'connecting' },
      on: { SHUTDOWN: 'closed' },
    },
    closed: {
      type: 'final',
      // Leaving `authenticated` or `connecting` already stopped the actor that held the socket.
      entry: ['logClosed', 'reportClosed', 'dropHeld'],
    },
  },
});

export type SmtpConnectionActor = ActorRefFrom<typeof smtpConnectionMachine>;
