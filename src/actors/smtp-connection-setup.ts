// What the connection's chart (smtp-connection.ts) names: its shapes, the
// actors that do its socket work, its delays, guards and actions. The chart
// says when each runs; this says what it does.
import { and, assign, enqueueActions, fromCallback, fromPromise, sendParent, sendTo, setup, stateIn, type GuardPredicate } from 'xstate';
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
 * knows what it handed out (its ledger is the one list of what a connection
 * holds), gives the difference. A connection that goes down or closes says
 * nothing of its jobs: what the ledger still has it holding never reached
 * the relay, or will never report.
 */
export type ConnectionReport =
  | { type: 'conn.ready'; cid: string; capacity: number }
  | { type: 'conn.delivered'; cid: string; job: MailJob; reply: SmtpReply; capacity: number }
  | { type: 'conn.failed'; cid: string; job: MailJob; error: MailroomError; capacity: number }
  /** a job it could not carry, untouched */
  | { type: 'conn.returned'; cid: string; jobs: readonly MailJob[] }
  /**
   * the session is gone, or a dial failed; `refused`: that dial found the
   * relay unreachable or refusing us (see relayRefused); it dials again at
   * `retryAt`
   */
  | { type: 'conn.down'; cid: string; error: MailroomError; refused: boolean; retryAt: number }
  | { type: 'conn.closed'; cid: string };

export interface ConnectionContext {
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
  /** jobs given to it while it could not pass them on (a NOOP under way), oldest first */
  readonly pending: MailJob[];
  /** jobs with the courier, their outcomes not yet reported */
  inFlight: number;
  /** consecutive failed dials */
  attempt: number;
  /** how long it waits before it dials again, set as it begins to wait */
  retryMs: number;
  /** messages the relay took part in on the current session */
  sent: number;
  /** messages the current session may carry (see sessionCap) */
  cap: number;
  /** the relay has carried several messages on one session of this connection: no need to start the next one at one job */
  proven: boolean;
  lastError: MailroomError | undefined;
}

/** The session a state invokes against; every state that has one is under `authenticated`. */
function current(context: ConnectionContext): SmtpSession {
  if (context.session === undefined) throw new MailroomError('EINTERNAL', 'no session in a connected state');
  return context.session;
}

/** The jobs it holds: waiting to be passed on, or with the courier. */
const holds = (context: ConnectionContext): number => context.pending.length + context.inFlight;

/**
 * How many jobs the connection can hold now: one, until the session has
 * carried a message (a relay that closes after every message would fail
 * the second for nothing); then two when the relay pipelines (one sending,
 * the next one's envelope behind its dot), or SMTP_PIPELINE_DEPTH when it
 * also takes BDAT; never more than the session's cap has room for.
 */
export function capacity(context: ConnectionContext): number {
  const depth = !context.pipelining || (context.sent < 1 && !context.proven) ? 1 : context.chunking ? context.depth : 2;
  return Math.max(0, Math.min(depth, context.cap - context.sent));
}

/** It was told to SHUTDOWN while it had a session: it finishes what it holds, then QUITs. */
const STOPPING = stateIn('#smtpConnection.authenticated.intent.stopping');

/** The same, for an action's check (xstate types stateIn for transitions, not for check). */
type StateGuard = GuardPredicate<ConnectionContext, ConnectionEvent, undefined, never>;

/** What an outcome report offers: nothing once the connection winds down or has lost its session. */
function capacityAfter(context: ConnectionContext, more: boolean, stopping: boolean): number {
  return !more || stopping ? 0 : capacity(context);
}

/** Sessions this short are re-dialled as before: dialling ahead for them would double the connections. */
const PREDIAL_MIN_CAP = 10;

type Sent = Extract<ConnectionEvent, { type: 'SENT' }>;
type SendFailed = Extract<ConnectionEvent, { type: 'SEND_FAILED' }>;

/** The actions of an outcome: count it toward the session's cap, let go of the job, report it (offering more capacity or not). */
export const delivered = (more: boolean) =>
  [
    { type: 'countSent', params: () => ({}) },
    { type: 'learnDepth', params: ({ event }: { event: Sent }) => ({ depth: event.depth }) },
    { type: 'letGo', params: ({ event }: { event: Sent }) => ({ job: event.job }) },
    { type: 'reportDelivered', params: ({ event }: { event: Sent }) => ({ job: event.job, reply: event.reply, more }) },
  ] as const;
export const failed = (more: boolean) =>
  [
    { type: 'countSent', params: ({ event }: { event: SendFailed }) => ({ error: event.error }) },
    { type: 'letGo', params: ({ event }: { event: SendFailed }) => ({ job: event.job }) },
    { type: 'reportFailed', params: ({ event }: { event: SendFailed }) => ({ job: event.job, error: event.error, more }) },
  ] as const;

export const connectionSetup = setup({
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
    stopping: STOPPING,
    /** nothing is with the courier any more, and it was told to stop */
    doneStopping: and([STOPPING, ({ context }) => context.inFlight === 0]),
    holdsJobs: ({ context }) => holds(context) > 0,
    /** the outcome being reported is of the last job with the courier (in `ending`, jobs held since wait for conn.down) */
    lastHeld: ({ context }) => holds(context) === 1,
    /** nothing is with the courier any more */
    allReported: ({ context }) => context.inFlight === 0,
    canCarry: ({ context }) => holds(context) < capacity(context),
    /**
     * Near the cap (the successor region has none yet): dial the successor
     * now. It is dialled this many messages before the cap: enough for a
     * dial's five or six round trips at four messages a round trip, and no
     * more than a quarter of a session. The outcome being reported counts
     * too (a guard is judged before the actions that count it).
     */
    predialDue: ({ context }) => context.cap >= PREDIAL_MIN_CAP && context.sent + 1 >= context.cap - Math.min(25, Math.floor(context.cap / 4)),
    predialing: stateIn('#smtpConnection.authenticated.successor.dialling'),
    /** its dial found the relay unreachable or refusing us (not a handshake cut short) */
    refusedDial: ({ event }) => relayRefused((event as { error?: unknown }).error),
  },
  actions: {
    // The per-mail bookkeeping mutates the context in place: assign() copies
    // the whole context each time, several copies per mail on the hot path.
    // Nothing else holds the old context: the machine is its only reader.
    hold: ({ context }, params: { job: MailJob }) => {
      context.pending.push(params.job);
    },
    /** A job goes to the courier: the connection keeps only the count. */
    deliver: enqueueActions(({ context, enqueue }, params: { job: MailJob }) => {
      context.inFlight++;
      enqueue.sendTo('courier', { type: 'deliver', job: params.job } satisfies CourierRequest);
    }),
    /** What waited for the NOOP goes to the courier, oldest first. */
    deliverPending: enqueueActions(({ context, enqueue }) => {
      for (const job of context.pending.splice(0)) {
        context.inFlight++;
        enqueue.sendTo('courier', { type: 'deliver', job } satisfies CourierRequest);
      }
    }),
    /** The relay took part in this delivery: it counts toward the session's cap. One the session lost before the relay answered MAIL (ESTALE) does not. */
    countSent: ({ context }, params: { error?: MailroomError }) => {
      if (params.error?.code !== 'ESTALE') context.sent += 1;
    },
    /** The round trip, as the courier measures it, sets how many whole messages this connection takes at once. */
    learnDepth: ({ context }, params: { depth: number }) => {
      context.depth = params.depth;
    },
    /** The job's outcome is in: the connection no longer holds it (it reports it next). */
    letGo: ({ context }, params: { job: MailJob }) => {
      if (context.inFlight === 0) throw new MailroomError('EINTERNAL', `connection ${context.cid} has an outcome for job ${params.job.id}, and no job with its courier`);
      context.inFlight--;
    },
    reportDelivered: enqueueActions(({ context, enqueue, check }, params: { job: MailJob; reply: SmtpReply; more: boolean }) => {
      const capacity = capacityAfter(context, params.more, check(STOPPING as unknown as StateGuard));
      enqueue.sendParent({ type: 'conn.delivered', cid: context.cid, job: params.job, reply: params.reply, capacity } satisfies ConnectionReport);
    }),
    reportFailed: enqueueActions(({ context, enqueue, check }, params: { job: MailJob; error: MailroomError; more: boolean }) => {
      const capacity = capacityAfter(context, params.more, check(STOPPING as unknown as StateGuard));
      enqueue.sendParent({ type: 'conn.failed', cid: context.cid, job: params.job, error: params.error, capacity } satisfies ConnectionReport);
    }),
    reportReady: sendParent(({ context }): ConnectionReport => ({ type: 'conn.ready', cid: context.cid, capacity: capacity(context) })),
    /** A job this connection cannot carry now goes straight back, untouched. */
    returnJob: sendParent(({ context }, params: { job: MailJob }): ConnectionReport => ({ type: 'conn.returned', cid: context.cid, jobs: [params.job] })),
    reportDown: sendParent(({ context }, params: { refused: boolean }): ConnectionReport => ({
      type: 'conn.down',
      cid: context.cid,
      error: context.lastError ?? new MailroomError('ECONNECTION', 'connection lost'),
      refused: params.refused,
      retryAt: Date.now() + context.retryMs,
    })),
    reportClosed: sendParent(({ context }): ConnectionReport => ({ type: 'conn.closed', cid: context.cid })),
    /** What it held went back with its report (the supervisor takes back what its ledger says this connection holds). */
    dropHeld: ({ context }) => {
      context.pending.length = 0;
      context.inFlight = 0;
    },
    predial: sendTo('courier', { type: 'predial' } satisfies CourierRequest),
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
      cap: sessionCap(context.options.maxMessagesPerConnection),
      proven: params.proven,
      lastError: undefined,
    })),
    /** How long it waits before it dials again: the backoff for its failed dials in a row; bad credentials do not get better soon, so the cap. */
    planRetry: assign(({ context }) => {
      const { backoffBaseMs, backoffMaxMs } = context.options;
      return { retryMs: context.lastError?.code === 'EAUTH' ? backoffMaxMs : backoffDelay(context.attempt, backoffBaseMs, backoffMaxMs) };
    }),
    recordDialFailure: assign(({ context }, params: { error: unknown }) => ({ lastError: toMailroomError(params.error), attempt: context.attempt + 1 })),
    /** The session failed (a loss, a failed NOOP): the next dial is the first of a new series. */
    recordLoss: assign((_, params: { error: unknown }) => ({ lastError: toMailroomError(params.error), attempt: 1 })),
    forgetSession: assign({ session: undefined }),
    logConnecting: ({ context }) => context.log.debug('connecting', { attempt: context.attempt }),
    logIdle: ({ context }) => context.log.debug('authenticated', { sent: context.sent }),
    logRecycling: ({ context }) => context.log.debug('recycling', { sent: context.sent }),
    logNoSuccessor: ({ context }, params: { error: MailroomError | undefined }) =>
      context.log.debug('no successor session: dialling now', { code: params.error?.code, reason: params.error?.message }),
    logReconnecting: ({ context }) =>
      context.log.debug('reconnecting', { attempt: context.attempt, code: context.lastError?.code, reason: context.lastError?.message }),
    logClosed: ({ context }) => context.log.debug('closed'),
  },
});

/** The courier's input while authenticated: the session, and how it dials a successor and paces the pipeline. */
export function courierInput(context: ConnectionContext): CourierInput {
  return {
    session: current(context),
    options: { ...context.options.session, keepaliveMs: context.options.keepaliveMs, pipelineDepth: context.options.pipelineDepth, pipelineDepthMax: context.options.pipelineDepthMax },
  };
}

export { current };
