// One persistent SMTP connection as a state machine:
// connecting → session.authenticated ⇄ session.sending … , on any fault
// reconnecting (capped exponential backoff with full jitter) → connecting,
// and session.closing → closed on shutdown. Socket work lives in the invoked
// actors; transitions only assign, log and report to the supervisor.
import { assign, fromCallback, fromPromise, sendParent, sendTo, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError, type SmtpReply } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import { SmtpSession, type SessionOptions } from '../smtp/session.js';
import { closesSession } from '../smtp/reply.js';
import { backoffDelay } from './backoff.js';
import { sessionCap } from './session-cap.js';

export interface ConnectionOptions {
  readonly session: SessionOptions;
  readonly keepaliveMs: number;
  readonly maxMessagesPerConnection: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface ConnectionInput {
  readonly cid: string;
  readonly options: ConnectionOptions;
  readonly log: Logger;
}

export type ConnectionEvent =
  | { type: 'JOB'; job: MailJob }
  /** finish the job in hand, QUIT, close */
  | { type: 'SHUTDOWN' }
  /** drop the socket now: the shutdown deadline has passed */
  | { type: 'FORCE_CLOSE' }
  | { type: 'LOST'; error: MailroomError }
  // from the `hold` actor, which performs the deliveries:
  /** the relay took the message (250 to the final dot) */
  | { type: 'SENT'; reply: SmtpReply }
  | { type: 'SEND_FAILED'; error: MailroomError }
  /** one event-loop turn after SENT: a close right behind the 250 has been seen */
  | { type: 'SETTLED' };

/** What the connection asks of its `hold` actor. */
type HoldRequest = { type: 'deliver'; job: MailJob } | { type: 'prime'; job: MailJob } | { type: 'settle' };

/** What a connection tells its supervisor. */
export type ConnectionReport =
  | { type: 'conn.ready'; cid: string }
  | { type: 'conn.delivered'; cid: string; job: MailJob; reply: SmtpReply }
  | { type: 'conn.failed'; cid: string; job: MailJob; error: MailroomError }
  | { type: 'conn.bounced'; cid: string; job: MailJob }
  | { type: 'conn.down'; cid: string; error: MailroomError }
  | { type: 'conn.closed'; cid: string };

interface ConnectionContext {
  readonly cid: string;
  readonly options: ConnectionOptions;
  readonly log: Logger;
  session: SmtpSession | undefined;
  job: MailJob | undefined;
  /**
   * The job to send right after `job`, given while it was being sent; its
   * envelope goes out behind `job`'s final dot where the relay pipelines.
   */
  next: MailJob | undefined;
  /** consecutive failed dials */
  attempt: number;
  /** messages sent on the current session */
  sent: number;
  /** messages the current session may carry (see sessionCap) */
  cap: number;
  lastError: MailroomError | undefined;
  shutdownRequested: boolean;
}

/** The session a state invokes against; every state that has one is under `session`. */
function current(context: ConnectionContext): SmtpSession {
  if (context.session === undefined) throw new MailroomError('EINTERNAL', 'no session in a connected state');
  return context.session;
}

/**
 * A refusal (4xx/5xx) leaves the session usable after RSET; a 421 (the relay
 * is closing the channel), a timeout or a lost socket means it is gone.
 */
function isReplyError(error: MailroomError): boolean {
  if (error.smtp === undefined || closesSession(error.smtp)) return false;
  return error.code === 'ESMTP_TRANSIENT' || error.code === 'ESMTP_PERMANENT' || error.code === 'ERECIPIENT';
}

export const smtpConnectionMachine = setup({
  types: {
    context: {} as ConnectionContext,
    events: {} as ConnectionEvent,
    input: {} as ConnectionInput,
  },
  actors: {
    dial: fromPromise<SmtpSession, SessionOptions>(({ input, signal }) => SmtpSession.dial(input, signal)),
    noop: fromPromise<void, SmtpSession>(({ input }) => input.noop()),
    reset: fromPromise<void, SmtpSession>(({ input }) => input.reset()),
    quit: fromPromise<void, SmtpSession>(({ input }) => input.quit()),
    // Holds the session while connected: reports its loss, performs the
    // deliveries the machine asks for, and destroys the session whenever the
    // machine leaves the connected states for any reason (a delivery still
    // under way then fails, and its outcome is dropped with this actor).
    // Deliveries run here rather than in a fromPromise actor per message:
    // spawning and stopping one per mail was a large share of the service's
    // CPU per mail.
    hold: fromCallback<HoldRequest, SmtpSession>(({ input: session, sendBack, receive }) => {
      const unsubscribe = session.onLost((error) => sendBack({ type: 'LOST', error }));
      const sent = (reply: SmtpReply): void => sendBack({ type: 'SENT', reply });
      const failed = (err: unknown): void => sendBack({ type: 'SEND_FAILED', error: toMailroomError(err) });
      receive((request) => {
        if (request.type === 'deliver') session.deliver(request.job.message.envelope, request.job.message.raw).then(sent, failed);
        else if (request.type === 'prime') session.prime(request.job.message.envelope);
        // One turn of the event loop, so that a close the relay sent right
        // behind its last reply is seen (as LOST) before the connection calls itself idle.
        else setImmediate(() => sendBack({ type: 'SETTLED' }));
      });
      return () => {
        unsubscribe();
        session.destroy();
      };
    }),
  },
  delays: {
    keepalive: ({ context }) => context.options.keepaliveMs,
    backoff: ({ context }) => {
      const { backoffBaseMs, backoffMaxMs } = context.options;
      // Bad credentials do not get better by retrying soon: wait the cap.
      if (context.lastError?.code === 'EAUTH') return backoffMaxMs;
      return backoffDelay(context.attempt, backoffBaseMs, backoffMaxMs);
    },
  },
  guards: {
    spent: ({ context }) => context.sent >= context.cap,
    shutdownRequested: ({ context }) => context.shutdownRequested,
    holdsJob: ({ context }) => context.job !== undefined,
    holdsNext: ({ context }) => context.next !== undefined,
    // Only a session that has carried a message and stayed up takes a next
    // one (a relay that closes after every message would fail it for
    // nothing), and none that is about to recycle or close.
    canTakeNext: ({ context }) =>
      context.next === undefined && !context.shutdownRequested && context.sent >= 1 && context.sent + 2 <= context.cap,
  },
  actions: {
    // A job that reaches a connection which is not idle goes back to the queue head.
    bounce: sendParent(({ context }, params: { job: MailJob }): ConnectionReport => ({
      type: 'conn.bounced',
      cid: context.cid,
      job: params.job,
    })),
    // The per-mail bookkeeping mutates the context in place: assign() copies
    // the whole context each time, three copies per mail on the hot path.
    // Nothing else holds the old context: the machine is its only reader.
    takeJob: ({ context }, params: { job: MailJob }) => {
      context.job = params.job;
    },
    countSent: ({ context }) => {
      context.sent += 1;
    },
    // Once reported, the job belongs to the supervisor again.
    releaseJob: ({ context }) => {
      context.job = undefined;
    },
    deliverJob: sendTo('hold', ({ context }): HoldRequest => ({ type: 'deliver', job: context.job as MailJob })),
    takeNext: ({ context }, params: { job: MailJob }) => {
      context.next = params.job;
    },
    primeNext: sendTo('hold', ({ context }): HoldRequest => ({ type: 'prime', job: context.next as MailJob })),
    promoteNext: ({ context }) => {
      context.job = context.next;
      context.next = undefined;
    },
    reportDelivered: sendParent(({ context }, params: { reply: SmtpReply }): ConnectionReport => ({
      type: 'conn.delivered',
      cid: context.cid,
      job: context.job as MailJob,
      reply: params.reply,
    })),
    reportFailed: sendParent(({ context }, params: { error: MailroomError }): ConnectionReport => ({
      type: 'conn.failed',
      cid: context.cid,
      job: context.job as MailJob,
      error: params.error,
    })),
    requestShutdown: assign({ shutdownRequested: true }),
    reportDown: sendParent(({ context }): ConnectionReport => ({
      type: 'conn.down',
      cid: context.cid,
      error: context.lastError ?? new MailroomError('ECONNECTION', 'connection lost'),
    })),
  },
}).createMachine({
  id: 'smtpConnection',
  context: ({ input }) => ({
    cid: input.cid,
    options: input.options,
    log: input.log,
    session: undefined,
    job: undefined,
    next: undefined,
    attempt: 0,
    sent: 0,
    cap: input.options.maxMessagesPerConnection,
    lastError: undefined,
    shutdownRequested: false,
  }),
  initial: 'connecting',
  on: {
    JOB: { actions: { type: 'bounce', params: ({ event }) => ({ job: event.job }) } },
    FORCE_CLOSE: { target: '.closed' },
  },
  states: {
    connecting: {
      entry: ({ context }) => context.log.debug('connecting', { attempt: context.attempt }),
      invoke: {
        src: 'dial',
        input: ({ context }) => context.options.session,
        onDone: {
          target: 'session',
          actions: assign({
            session: ({ event }) => event.output,
            attempt: 0,
            sent: 0,
            cap: ({ context }) => sessionCap(context.options.maxMessagesPerConnection),
            lastError: undefined,
          }),
        },
        onError: {
          target: 'reconnecting',
          actions: assign({
            lastError: ({ event }) => toMailroomError(event.error),
            attempt: ({ context }) => context.attempt + 1,
          }),
        },
      },
      on: { SHUTDOWN: 'closed' },
    },
    session: {
      invoke: { id: 'hold', src: 'hold', input: ({ context }) => current(context) },
      on: {
        LOST: {
          target: 'reconnecting',
          actions: assign({ lastError: ({ event }) => event.error, attempt: 1 }),
        },
      },
      initial: 'authenticated',
      states: {
        authenticated: {
          entry: [
            ({ context }) => context.log.debug('authenticated', { sent: context.sent }),
            sendParent(({ context }): ConnectionReport => ({ type: 'conn.ready', cid: context.cid })),
          ],
          always: { guard: 'shutdownRequested', target: 'closing' },
          after: { keepalive: 'pinging' },
          on: {
            JOB: { target: 'sending', actions: { type: 'takeJob', params: ({ event }) => ({ job: event.job }) } },
            SHUTDOWN: 'closing',
          },
        },
        pinging: {
          invoke: {
            src: 'noop',
            input: ({ context }) => current(context),
            // A job that came during the NOOP was held for this moment.
            onDone: [{ guard: 'holdsJob', target: 'sending' }, { target: 'authenticated' }],
            onError: {
              target: '#smtpConnection.reconnecting',
              actions: assign({ lastError: ({ event }) => toMailroomError(event.error), attempt: 1 }),
            },
          },
          on: {
            // The supervisor still counted this connection idle when it sent the
            // job; holding it beats bouncing it. If the NOOP fails, conn.down
            // hands it back.
            JOB: [
              { guard: 'holdsJob', actions: { type: 'bounce', params: ({ event }) => ({ job: event.job }) } },
              { actions: { type: 'takeJob', params: ({ event }) => ({ job: event.job }) } },
            ],
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        sending: {
          entry: 'deliverJob',
          on: {
            // The supervisor counts on the next job following at once (no
            // conn.ready between). Staying in `sending` without re-entering it
            // spares the exit and entry work on every pipelined message.
            SENT: [
              {
                guard: 'holdsNext',
                actions: ['countSent', { type: 'reportDelivered', params: ({ event }) => ({ reply: event.reply }) }, 'promoteNext', 'deliverJob'],
              },
              {
                target: 'delivered',
                actions: ['countSent', { type: 'reportDelivered', params: ({ event }) => ({ reply: event.reply }) }, 'releaseJob'],
              },
            ],
            SEND_FAILED: [
              {
                // The relay got the next envelope behind the refused message's
                // dot and waits for its content: no RSET, the next one goes on.
                guard: ({ context, event }) => isReplyError(event.error) && context.next !== undefined && context.session?.hasPrimed === true,
                actions: ['countSent', { type: 'reportFailed', params: ({ event }) => ({ error: event.error }) }, 'promoteNext', 'deliverJob'],
              },
              {
                guard: ({ event }) => isReplyError(event.error),
                target: 'resetting',
                actions: ['countSent', { type: 'reportFailed', params: ({ event }) => ({ error: event.error }) }, 'releaseJob'],
              },
              {
                target: '#smtpConnection.reconnecting',
                actions: [
                  { type: 'reportFailed', params: ({ event }) => ({ error: event.error }) },
                  'releaseJob',
                  assign({ lastError: ({ event }) => event.error, attempt: 1 }),
                ],
              },
            ],
            JOB: [
              { guard: 'canTakeNext', actions: [{ type: 'takeNext', params: ({ event }) => ({ job: event.job }) }, 'primeNext'] },
              { actions: { type: 'bounce', params: ({ event }) => ({ job: event.job }) } },
            ],
            SHUTDOWN: { actions: 'requestShutdown' },
            LOST: {}, // the delivery fails on its own (SEND_FAILED) and reports the job
          },
        },
        delivered: {
          // Relays that close after each message (or after N) send the close
          // right behind the 250: taking the next job first would fail it for
          // nothing, so `hold` sends SETTLED one event-loop turn later. LOST
          // meanwhile leads to reconnecting from `session`.
          entry: sendTo('hold', { type: 'settle' }),
          on: {
            SETTLED: [{ guard: 'spent', target: 'recycling' }, { target: 'authenticated' }],
            SHUTDOWN: { actions: 'requestShutdown' },
          },
        },
        resetting: {
          invoke: {
            src: 'reset',
            input: ({ context }) => current(context),
            onDone: [
              { guard: 'holdsNext', target: 'sending', actions: 'promoteNext' },
              { target: 'delivered' },
            ],
            onError: {
              target: '#smtpConnection.reconnecting',
              actions: assign({ lastError: ({ event }) => toMailroomError(event.error), attempt: 1 }),
            },
          },
          on: { SHUTDOWN: { actions: 'requestShutdown' } },
        },
        recycling: {
          // Providers cap messages per connection; a fresh dial is routine.
          entry: ({ context }) => context.log.debug('recycling', { sent: context.sent }),
          invoke: {
            src: 'quit',
            input: ({ context }) => current(context),
            onDone: [
              { guard: 'shutdownRequested', target: '#smtpConnection.closed' },
              { target: '#smtpConnection.connecting' },
            ],
            onError: '#smtpConnection.connecting',
          },
          on: { SHUTDOWN: { actions: 'requestShutdown' }, LOST: {} },
        },
        closing: {
          invoke: {
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
      entry: [
        // A job held during a NOOP never reached the relay: conn.down hands it back.
        // conn.down hands back the next job too: none of it reached the relay as a message.
        assign({ session: undefined, job: undefined, next: undefined }),
        ({ context }) =>
          context.log.debug('reconnecting', { attempt: context.attempt, code: context.lastError?.code, reason: context.lastError?.message }),
        'reportDown',
      ],
      // Lost while finishing its last job after SHUTDOWN: no point dialling again.
      always: { guard: 'shutdownRequested', target: 'closed' },
      after: { backoff: 'connecting' },
      on: { SHUTDOWN: 'closed' },
    },
    closed: {
      type: 'final',
      // Leaving `session` or `connecting` already stopped the actor that held the socket.
      entry: [
        ({ context }) => context.log.debug('closed'),
        sendParent(({ context }): ConnectionReport => ({ type: 'conn.closed', cid: context.cid })),
      ],
    },
  },
});

export type SmtpConnectionActor = ActorRefFrom<typeof smtpConnectionMachine>;
