// The OTP actor: every SendCode, ValidateCode and sweep is an event in its
// mailbox, and it alone asks the store, in mailbox order, so checks never
// race: of any number of concurrent checks of a correct code, exactly one
// wins (within a replica by this order, across replicas by the store's
// atomic steps).
//
//   live: serving ──shutdown──► draining ──no send under way──► stopped
//           code.send: reserve,    code.send: refused
//           mail, commit; sweep
//         (in both: checks answered, sends under way go on)
//
// A send claims the address in the store first (cooldown and hourly budget
// counted before any mail goes out), then hands the code mail to
// `codeMail`, a long-lived child that puts it on the mail path. Only when
// the relay accepted the mail is the code committed and live; a failed mail
// gives the claim back. Draining waits for the sends under way.
//
// The store's work happens in `store`, a long-lived child: the in-memory
// store answers at once, Redis a round trip later (the checks of one event
// in one round trip); either way the requests go out in mailbox order.
// Callers get their answers by promise (lib/resolvers.ts): no caller's code runs
// inside this actor. A check carries the candidate already hashed, and the
// code mail's content travels sealed (sealed.ts): no event carries a code
// an inspector could read.
//
// Context holds the sends in flight, owned by this actor alone; the store
// is the store actor's.
import { enqueueActions, fromCallback, sendTo, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError } from '../errors.js';
import type { Address } from '../mail/address.js';
import { PLAIN, type Draft } from '../mail/draft.js';
import { CODE_LANE, type Lane } from '../mail/lane.js';
import type { Sending } from '../mail/mailer.js';
import { CodeHasher, generateCode, type CodeHash } from '../otp/code.js';
import { Sealed } from '../otp/sealed.js';
import { whenAnswered, type OtpStore, type Reservation, type SweepResult } from '../otp/store.js';
import { renderCodeMail, type CodeMail, type CodeTemplates } from '../otp/template.js';
import type { Resolvers } from '../lib/resolvers.js';
import type { CheckRequest, CodeSent, OtpRequest } from '../otp/requests.js';

export interface CodeMailer {
  send(draft: Draft, options: { deadline: number; lane: Lane; owner: string }): Sending;
}

/** The OTP actor's rules (config.otp). */
export interface OtpOptions {
  readonly length: number;
  readonly lifespanMs: number;
  readonly resendCooldownMs: number;
  readonly cleanupMs: number;
  /** test only: hand the code back in the reply */
  readonly returnCode: boolean;
  readonly templates: CodeTemplates;
}

export interface OtpInput {
  readonly options: OtpOptions;
  readonly store: OtpStore;
  readonly hasher: CodeHasher;
  readonly mailer: CodeMailer;
  readonly log: Logger;
  /** epoch ms; tests inject their own */
  readonly now?: () => number;
}

export type OtpEvent =
  | OtpRequest
  | { type: 'sweep' }
  | { type: 'mail.settled'; id: number; error: MailroomError | undefined }
  // from the store child:
  | { type: 'store.reserved'; id: number; reservation: Reservation }
  | { type: 'store.committed'; id: number }
  | { type: 'store.failed'; id: number; error: MailroomError }
  | { type: 'store.swept'; result: SweepResult }
  | { type: 'shutdown' };

/** What the actor asks of its code-mail child. */
interface CodeMailRequest {
  readonly type: 'mail';
  readonly id: number;
  readonly to: Address;
  readonly deadline: number;
  readonly owner: string;
  readonly content: Sealed<CodeMail>;
}

/** What the actor asks of its store child, in mailbox order. */
type StoreRequest =
  | { type: 'reserve'; id: number; key: string; now: number }
  | { type: 'commit'; id: number; key: string; hash: CodeHash; now: number }
  | { type: 'release'; key: string; refund: boolean; now: number }
  | { type: 'checks'; checks: readonly CheckRequest[]; now: number; reply: Resolvers<number[]> }
  | { type: 'sweep'; now: number; limit: number };

/** A send from its request to its answer: claiming the address, mailing the code, making it live. */
interface PendingSend {
  phase: 'reserving' | 'mailing' | 'committing';
  readonly key: string;
  readonly to: Address;
  readonly deadline: number;
  readonly owner: string;
  readonly reply: Resolvers<CodeSent>;
  hash: CodeHash | undefined;
  otpCode: string;
}

interface OtpContext extends Required<OtpInput> {
  /** sends under way, by their number */
  readonly pending: Map<number, PendingSend>;
  seq: number;
}

/** A store that cannot be reached fails the call; it never gives an answer from a stale view. */
function fromStore(err: unknown): MailroomError {
  if (err instanceof MailroomError) return err;
  return new MailroomError('ESTORE', `the OTP store did not answer: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** A 5xx refusal is the address's own fault and keeps its place in the hourly budget; our outages do not. */
function refundable(error: MailroomError): boolean {
  return error.code !== 'ESMTP_PERMANENT' && error.code !== 'ERECIPIENT';
}

function rateLimited(r: Exclude<Reservation, { ok: true }>): MailroomError {
  const retryAfterSeconds = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  const message =
    r.reason === 'pending'
      ? 'a code for this address is being sent'
      : r.reason === 'cooldown'
        ? 'a code was sent to this address moments ago'
        : 'too many codes for this address this hour';
  return new MailroomError('ERATELIMIT', message, { retryAfterSeconds });
}

/**
 * Most entries one sweep event removes: a slice holds the event loop for
 * well under a few milliseconds, and the next waits a turn of the loop (see
 * docs/decisions.md). A store behind a network is bounded the same way.
 */
export const SWEEP_SLICE = 1_000;

type SendParams = Omit<Extract<OtpEvent, { type: 'code.send' }>, 'type'>;

export const otpMachine = setup({
  types: {
    context: {} as OtpContext,
    events: {} as OtpEvent,
    input: {} as OtpInput,
  },
  actors: {
    // Sends a sweep every `input` ms, and the next slice of a sweep when
    // asked. A slice follows the one before after a whole event-loop turn
    // (setImmediate): zero-delay timers scheduled from a timer all run in the
    // same timers phase, so cold slices chained that way held the loop for
    // several milliseconds at a stretch.
    sweeper: fromCallback<{ type: 'sweep.more' }, number>(({ input, sendBack, receive }) => {
      const timer = setInterval(() => sendBack({ type: 'sweep' }), input);
      timer.unref();
      let more: NodeJS.Immediate | undefined;
      receive(() => {
        more ??= setImmediate(() => {
          more = undefined;
          sendBack({ type: 'sweep' });
        });
      });
      return () => {
        clearInterval(timer);
        if (more !== undefined) clearImmediate(more);
      };
    }),
    // Puts each code mail on the mail path and reports its outcome. One
    // child for the actor's life: spawning one per send (registered,
    // stopped) cost more CPU and garbage than the rest of a SendCode's work.
    codeMail: fromCallback<CodeMailRequest, CodeMailer>(({ input: mailer, sendBack, receive }) => {
      const settled = (id: number, error: MailroomError | undefined): void => sendBack({ type: 'mail.settled', id, error });
      receive((request) => {
        let sending: Sending;
        try {
          sending = mailer.send({ ...PLAIN, to: [request.to], ...request.content.open() }, { deadline: request.deadline, lane: CODE_LANE, owner: request.owner });
        } catch (err) {
          settled(request.id, toMailroomError(err));
          return;
        }
        sending.result.then(
          () => settled(request.id, undefined),
          (err: unknown) => settled(request.id, toMailroomError(err)),
        );
      });
    }),
    // Runs the store's steps in the order they are asked for and reports
    // each outcome. Checks answer their callers' promise directly: a batch
    // of them is one event in, one reply out.
    store: fromCallback<StoreRequest, { store: OtpStore; log: Logger }>(({ input: { store, log }, sendBack, receive }) => {
      receive((request) => {
        switch (request.type) {
          case 'reserve':
            whenAnswered(
              store.reserve(request.key, request.now),
              (reservation) => sendBack({ type: 'store.reserved', id: request.id, reservation }),
              (err) => sendBack({ type: 'store.failed', id: request.id, error: fromStore(err) }),
            );
            return;
          case 'commit':
            whenAnswered(
              store.commit(request.key, request.hash, request.now),
              () => sendBack({ type: 'store.committed', id: request.id }),
              (err) => sendBack({ type: 'store.failed', id: request.id, error: fromStore(err) }),
            );
            return;
          case 'release':
            // Best effort: a claim the store did not hear of ends with its time to live.
            whenAnswered(store.release(request.key, request.refund, request.now), () => undefined, (err) => log.warn('could not release a send claim', { reason: fromStore(err).message }));
            return;
          case 'checks': {
            const answers = request.checks.map((c) => store.check(c.key, c.hash, request.now));
            if (answers.some((a) => a instanceof Promise)) {
              Promise.all(answers).then(request.reply.resolve, (err: unknown) => request.reply.reject(fromStore(err)));
            } else {
              request.reply.resolve(answers as number[]);
            }
            return;
          }
          case 'sweep':
            whenAnswered(
              store.sweep(request.now, request.limit),
              (result) => sendBack({ type: 'store.swept', result }),
              (err) => log.warn('sweep failed', { reason: fromStore(err).message }),
            );
            return;
        }
      });
    }),
  },
  guards: {
    nothingPending: ({ context }) => context.pending.size === 0,
    reserved: (_, params: { reservation: Reservation }) => params.reservation.ok,
    mailAccepted: (_, params: { error: MailroomError | undefined }) => params.error === undefined,
  },
  actions: {
    checkCodes: sendTo('store', ({ context }, params: { checks: readonly CheckRequest[]; reply: Resolvers<number[]> }): StoreRequest => ({
      type: 'checks',
      checks: params.checks,
      now: context.now(),
      reply: params.reply,
    })),
    /** A send begins by claiming the address in the store. */
    reserve: enqueueActions(({ context, enqueue }, params: SendParams) => {
      const id = ++context.seq;
      context.pending.set(id, { phase: 'reserving', key: params.key, to: params.to, deadline: params.deadline, owner: params.owner, reply: params.reply, hash: undefined, otpCode: '' });
      enqueue.sendTo('store', { type: 'reserve', id, key: params.key, now: context.now() } satisfies StoreRequest);
    }),
    /** Claimed: a code is made and mailed; only its hash stays here. */
    mailCode: enqueueActions(({ context, enqueue }, params: { id: number }) => {
      const send = context.pending.get(params.id) as PendingSend;
      const { options } = context;
      const code = generateCode(options.length);
      send.phase = 'mailing';
      send.hash = context.hasher.hash(send.key, code);
      send.otpCode = options.returnCode ? code : '';
      const content = new Sealed(renderCodeMail(options.templates, code, options.lifespanMs));
      // A code mail still waiting when its code would have expired is not sent: it could only mislead.
      // Wall time, as the caller's deadline and the pool's checks are: the actor's clock (injected in
      // tests) times the code, not the mail.
      const deadline = Math.min(send.deadline, Date.now() + options.lifespanMs);
      enqueue.sendTo('codeMail', { type: 'mail', id: params.id, to: send.to, deadline, owner: send.owner, content } satisfies CodeMailRequest);
    }),
    refuseReservation: ({ context }, params: { id: number; reservation: Reservation }) => {
      const send = context.pending.get(params.id) as PendingSend;
      context.pending.delete(params.id);
      if (!params.reservation.ok) send.reply.reject(rateLimited(params.reservation));
    },
    refuseSend: (_, params: { reply: Resolvers<CodeSent> }) => {
      params.reply.reject(new MailroomError('ESHUTDOWN', 'the service is shutting down'));
    },
    /** The relay accepted the code mail: the code becomes live. */
    commit: enqueueActions(({ context, enqueue }, params: { id: number }) => {
      const send = context.pending.get(params.id) as PendingSend;
      send.phase = 'committing';
      enqueue.sendTo('store', { type: 'commit', id: params.id, key: send.key, hash: send.hash as CodeHash, now: context.now() } satisfies StoreRequest);
    }),
    /** The code mail failed: the claim goes back, refunded unless the relay refused the address. */
    failMail: enqueueActions(({ context, enqueue }, params: { id: number; error: MailroomError }) => {
      const send = context.pending.get(params.id) as PendingSend;
      context.pending.delete(params.id);
      enqueue.sendTo('store', { type: 'release', key: send.key, refund: refundable(params.error), now: context.now() } satisfies StoreRequest);
      context.log.info('code mail failed', { code: params.error.code, reason: params.error.message });
      send.reply.reject(params.error);
    }),
    answerSent: ({ context }, params: { id: number }) => {
      const send = context.pending.get(params.id) as PendingSend;
      context.pending.delete(params.id);
      const { lifespanMs, resendCooldownMs } = context.options;
      send.reply.resolve({ expiresInSeconds: Math.ceil(lifespanMs / 1000), resendAfterSeconds: Math.ceil(resendCooldownMs / 1000), otpCode: send.otpCode });
    },
    /** The store failed a claim or a commit. A code mailed but not stored is no code: the caller is told, and may ask again. */
    failStore: enqueueActions(({ context, enqueue }, params: { id: number; error: MailroomError }) => {
      const send = context.pending.get(params.id) as PendingSend;
      context.pending.delete(params.id);
      context.log.warn('OTP store failed', { phase: send.phase, code: params.error.code, reason: params.error.message });
      if (send.phase === 'committing') {
        enqueue.sendTo('store', { type: 'release', key: send.key, refund: true, now: context.now() } satisfies StoreRequest);
        send.reply.reject(new MailroomError('ESTORE', `the code mail went out, but its code could not be stored (${params.error.message}); ask for a new one`, { cause: params.error }));
        return;
      }
      send.reply.reject(params.error);
    }),
    sweep: sendTo('store', ({ context }): StoreRequest => ({ type: 'sweep', now: context.now(), limit: SWEEP_SLICE })),
    /** A full slice may leave more: carry on after the event loop had its turn. */
    sweptSlice: enqueueActions(({ context, enqueue }, params: { result: SweepResult }) => {
      const { removed, examined } = params.result;
      if (removed > 0) context.log.debug('swept', { removed, examined, live: context.store.size });
      if (removed >= SWEEP_SLICE) enqueue.sendTo('sweeper', { type: 'sweep.more' });
    }),
    logDraining: ({ context }) => context.log.debug('draining', { sendsUnderWay: context.pending.size }),
  },
}).createMachine({
  id: 'otp',
  context: ({ input }) => ({
    options: input.options,
    store: input.store,
    hasher: input.hasher,
    mailer: input.mailer,
    log: input.log,
    now: input.now ?? Date.now,
    pending: new Map(),
    seq: 0,
  }),
  // Both live until the actor stops: sends under way report to it while draining.
  invoke: [
    { id: 'codeMail', src: 'codeMail', input: ({ context }) => context.mailer },
    { id: 'store', src: 'store', input: ({ context }) => ({ store: context.store, log: context.log }) },
  ],
  initial: 'live',
  states: {
    // Checks are answered, and sends under way go on, until it stops.
    live: {
      on: {
        'code.checks': { actions: { type: 'checkCodes', params: ({ event }) => ({ checks: event.checks, reply: event.reply }) } },
        'store.reserved': [
          { guard: { type: 'reserved', params: ({ event }) => ({ reservation: event.reservation }) }, actions: { type: 'mailCode', params: ({ event }) => ({ id: event.id }) } },
          { actions: { type: 'refuseReservation', params: ({ event }) => ({ id: event.id, reservation: event.reservation }) } },
        ],
        'mail.settled': [
          { guard: { type: 'mailAccepted', params: ({ event }) => ({ error: event.error }) }, actions: { type: 'commit', params: ({ event }) => ({ id: event.id }) } },
          { actions: { type: 'failMail', params: ({ event }) => ({ id: event.id, error: event.error as MailroomError }) } },
        ],
        'store.committed': { actions: { type: 'answerSent', params: ({ event }) => ({ id: event.id }) } },
        'store.failed': { actions: { type: 'failStore', params: ({ event }) => ({ id: event.id, error: event.error }) } },
      },
      initial: 'serving',
      states: {
        serving: {
          invoke: { id: 'sweeper', src: 'sweeper', input: ({ context }) => context.options.cleanupMs },
          on: {
            'code.send': { actions: { type: 'reserve', params: ({ event }) => ({ key: event.key, to: event.to, deadline: event.deadline, owner: event.owner, reply: event.reply }) } },
            sweep: { actions: 'sweep' },
            'store.swept': { actions: { type: 'sweptSlice', params: ({ event }) => ({ result: event.result }) } },
            shutdown: { target: 'draining' },
          },
        },
        draining: {
          entry: 'logDraining',
          always: { guard: 'nothingPending', target: '#otp.stopped' },
          on: {
            'code.send': { actions: { type: 'refuseSend', params: ({ event }) => ({ reply: event.reply }) } },
          },
        },
      },
    },
    stopped: {
      type: 'final',
    },
  },
});

export type OtpActor = ActorRefFrom<typeof otpMachine>;
