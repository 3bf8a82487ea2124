// The OTP actor: every SendCode, ValidateCode and sweep is an event in its
// mailbox, and it alone touches the store, so checks never race: of any
// number of concurrent checks of a correct code, exactly one wins.
//
//   serving ──shutdown──► draining ──no code mail under way──► stopped
//     code.send: claim, mail      code.send: refused
//     code.checks, sweep          code.checks
//
// A send claims the address in the store at once (cooldown and hourly budget
// counted before any mail goes out) and hands the code mail to `codeMail`, a
// long-lived child that puts it on the mail path. Only when the relay
// accepted the mail (mail.settled) does the code become live. Draining waits
// for the code mails under way: the supervisor drains them, and each either
// goes out (its code live, its caller told) or fails and gives its claim back.
//
// Callers get their answers by promise (reply.ts): no caller's code runs
// inside this actor. A check carries the candidate already hashed, and the
// code mail's content travels sealed (sealed.ts): no event carries a code
// an inspector could read.
//
// Context holds the mutable store and the sends in flight, owned by this
// actor alone: copying a million codes per event is not an option, and the
// check path must stay allocation-light (it is benchmarked per call).
import { enqueueActions, fromCallback, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError } from '../errors.js';
import type { Address } from '../mail/address.js';
import type { Draft } from '../mail/compose.js';
import type { Sending } from '../mail/mailer.js';
import { CodeHasher, generateCode, type CodeHash } from '../otp/code.js';
import { Sealed } from '../otp/sealed.js';
import type { OtpStore, Reservation } from '../otp/store.js';
import { renderCodeMail, type CodeMail, type CodeTemplates } from '../otp/template.js';
import type { Reply } from './reply.js';

export interface CodeMailer {
  send(draft: Draft, options: { deadline: number }): Sending;
}

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

export interface CodeSent {
  readonly expiresInSeconds: number;
  readonly resendAfterSeconds: number;
  /** '' unless OTP_RETURN_CODE=true */
  readonly otpCode: string;
}

/** The candidate arrives hashed: no event in the mailbox carries a code an inspector could see. */
export interface CheckRequest {
  readonly key: string;
  readonly hash: CodeHash;
}

export type OtpEvent =
  /** key: the normalised address; to: where the mail goes */
  | { type: 'code.send'; key: string; to: Address; deadline: number; reply: Reply<CodeSent> }
  /**
   * Checks that reached the service together (one microtask run, see
   * CheckBatcher), answered in order: each result is CODE_ACCEPTED, or the
   * wrong checks the live code has left (0 when none).
   */
  | { type: 'code.checks'; checks: readonly CheckRequest[]; reply: Reply<number[]> }
  | { type: 'sweep' }
  | { type: 'mail.settled'; id: number; error: MailroomError | undefined }
  | { type: 'shutdown' };

/** What the actor asks of its code-mail child. */
interface CodeMailRequest {
  readonly type: 'mail';
  readonly id: number;
  readonly to: Address;
  readonly deadline: number;
  readonly content: Sealed<CodeMail>;
}

interface PendingSend {
  readonly key: string;
  readonly hash: CodeHash;
  readonly reply: Reply<CodeSent>;
  readonly otpCode: string;
}

interface OtpContext {
  readonly options: OtpOptions;
  readonly store: OtpStore;
  readonly hasher: CodeHasher;
  readonly mailer: CodeMailer;
  readonly log: Logger;
  readonly now: () => number;
  /** sends whose mail is under way, by their number */
  readonly pending: Map<number, PendingSend>;
  seq: number;
}

/** A 5xx refusal is the address's own fault and keeps its place in the hourly budget; our outages do not. */
function refundable(error: MailroomError): boolean {
  return error.code !== 'ESMTP_PERMANENT' && error.code !== 'ERECIPIENT';
}

function refusal(r: Exclude<Reservation, { ok: true }>): MailroomError {
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
 * Most entries one sweep event removes. A removal from the in-memory store
 * costs 0.03 to 0.06 µs once its code is optimised and up to ~2 µs before
 * (measured among a million codes), so a slice holds the event loop for
 * 0.05 ms warm and about 2 ms at worst cold, and the next slice waits for
 * the following turn of the loop; a store behind a network costs far more
 * per removal, and the slice bounds that too.
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
          sending = mailer.send({ to: [request.to], cc: [], bcc: [], replyTo: [], ...request.content.open() }, { deadline: request.deadline });
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
  },
  guards: {
    nothingPending: ({ context }) => context.pending.size === 0,
  },
  actions: {
    checkCodes: ({ context }, params: { checks: readonly CheckRequest[]; reply: Reply<number[]> }) => {
      const now = context.now();
      const results: number[] = new Array<number>(params.checks.length);
      for (let i = 0; i < results.length; i++) {
        const check = params.checks[i] as CheckRequest;
        results[i] = context.store.check(check.key, check.hash, now);
      }
      params.reply.resolve(results);
    },
    /** Claims the address (or refuses the send) and hands the code mail to the mail path. */
    startSend: enqueueActions(({ context, enqueue }, params: SendParams) => {
      const reservation = context.store.reserve(params.key, context.now());
      if (!reservation.ok) {
        params.reply.reject(refusal(reservation));
        return;
      }
      const { options } = context;
      const code = generateCode(options.length);
      const id = ++context.seq;
      context.pending.set(id, { key: params.key, hash: context.hasher.hash(params.key, code), reply: params.reply, otpCode: options.returnCode ? code : '' });
      const content = new Sealed(renderCodeMail(options.templates, code, options.lifespanMs));
      enqueue.sendTo('codeMail', { type: 'mail', id, to: params.to, deadline: params.deadline, content } satisfies CodeMailRequest);
    }),
    refuseSend: (_, params: { reply: Reply<CodeSent> }) => {
      params.reply.reject(new MailroomError('ESHUTDOWN', 'the service is shutting down'));
    },
    /** The code mail's outcome: accepted makes the code live, anything else gives the claim back. */
    finishSend: ({ context }, params: { id: number; error: MailroomError | undefined }) => {
      const send = context.pending.get(params.id) as PendingSend;
      context.pending.delete(params.id);
      const { error } = params;
      if (error !== undefined) {
        context.store.release(send.key, refundable(error));
        context.log.info('code mail failed', { code: error.code, reason: error.message });
        send.reply.reject(error);
        return;
      }
      context.store.commit(send.key, send.hash, context.now());
      const { lifespanMs, resendCooldownMs } = context.options;
      send.reply.resolve({
        expiresInSeconds: Math.ceil(lifespanMs / 1000),
        resendAfterSeconds: Math.ceil(resendCooldownMs / 1000),
        otpCode: send.otpCode,
      });
    },
    sweep: enqueueActions(({ context, enqueue }) => {
      const { removed, examined } = context.store.sweep(context.now(), SWEEP_SLICE);
      if (removed > 0) context.log.debug('swept', { removed, examined, live: context.store.size });
      // A full slice may leave more: carry on after the event loop had its turn.
      if (removed >= SWEEP_SLICE) enqueue.sendTo('sweeper', { type: 'sweep.more' });
    }),
    logDraining: ({ context }) => context.log.debug('draining', { codeMailsUnderWay: context.pending.size }),
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
  // Lives until the actor stops: code mails under way report to it while draining.
  invoke: { id: 'codeMail', src: 'codeMail', input: ({ context }) => context.mailer },
  on: {
    'code.checks': { actions: { type: 'checkCodes', params: ({ event }) => ({ checks: event.checks, reply: event.reply }) } },
    'mail.settled': { actions: { type: 'finishSend', params: ({ event }) => ({ id: event.id, error: event.error }) } },
  },
  initial: 'serving',
  states: {
    serving: {
      invoke: { id: 'sweeper', src: 'sweeper', input: ({ context }) => context.options.cleanupMs },
      on: {
        'code.send': { actions: { type: 'startSend', params: ({ event }) => ({ key: event.key, to: event.to, deadline: event.deadline, reply: event.reply }) } },
        sweep: { actions: 'sweep' },
        shutdown: { target: 'draining' },
      },
    },
    draining: {
      entry: 'logDraining',
      always: { guard: 'nothingPending', target: 'stopped' },
      on: {
        'code.send': { actions: { type: 'refuseSend', params: ({ event }) => ({ reply: event.reply }) } },
      },
    },
    stopped: {
      type: 'final',
    },
  },
});

export type OtpActor = ActorRefFrom<typeof otpMachine>;
