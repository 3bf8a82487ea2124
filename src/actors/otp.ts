// The OTP actor: every SendCode, ValidateCode and sweep is an event in its
// mailbox, and it alone touches the store, so checks never race: of any
// number of concurrent checks of a correct code, exactly one wins.
//
// A send claims the address in the store at once (cooldown and hourly budget
// counted before any mail goes out), mails the code through the Mailer, and
// only when the relay accepted the mail (its outcome comes back through the
// mailbox as mail.settled) makes the code live.
// Callers get their answer through the `reply` function in their event;
// a check carries the candidate already hashed, never the code.
//
// Context holds the mutable store and the map of sends in flight, owned by
// this actor alone: copying a million codes per event is not an option, and
// the check path must stay allocation-light (it is benchmarked per call).
import { enqueueActions, fromCallback, setup, type ActorRefFrom } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError } from '../errors.js';
import type { Address } from '../mail/address.js';
import type { Draft } from '../mail/compose.js';
import type { Sending } from '../mail/mailer.js';
import { CodeHasher, generateCode, type CodeHash } from '../otp/code.js';
import type { OtpStore, Reservation } from '../otp/store.js';
import { renderCodeMail, type CodeTemplates } from '../otp/template.js';

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

export type SendReply = (error: MailroomError | undefined, sent?: CodeSent) => void;
/** `result` is CODE_ACCEPTED, or the wrong checks the live code has left (0 when none). */
export type CheckReply = (result: number) => void;

/** The candidate arrives hashed: no event in the mailbox carries a code an inspector could see. */
export interface CheckRequest {
  readonly key: string;
  readonly hash: CodeHash;
  readonly reply: CheckReply;
}

export type OtpEvent =
  /** key: the normalised address; to: where the mail goes */
  | { type: 'code.send'; key: string; to: Address; deadline: number; reply: SendReply }
  | ({ type: 'code.check' } & CheckRequest)
  /** checks that reached the service together (one microtask run), answered in order (see CheckBatcher) */
  | { type: 'code.checks'; checks: readonly CheckRequest[] }
  | { type: 'sweep' }
  | { type: 'mail.settled'; id: number; error: MailroomError | undefined }
  | { type: 'shutdown' };

interface PendingSend {
  readonly key: string;
  readonly hash: CodeHash;
  readonly reply: SendReply;
  readonly otpCode: string;
  /** cancels the code mail's job while no connection has taken it */
  cancel: () => void;
}

/** Posts a send's outcome to the actor's own mailbox. */
type Settle = (id: number, error: MailroomError | undefined) => void;

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

type Report<T extends OtpEvent['type']> = Extract<OtpEvent, { type: T }>;

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

const noop = (): void => undefined;

// The mail goes out from the action itself, its outcome coming back as an
// event: a child actor per send (spawned, registered, stopped) cost more CPU
// and garbage than the rest of a SendCode's work in the actor together.
function onSend(context: OtpContext, event: Report<'code.send'>, settle: Settle): void {
  const reservation = context.store.reserve(event.key, context.now());
  if (!reservation.ok) {
    event.reply(refusal(reservation));
    return;
  }
  const { options, mailer } = context;
  const code = generateCode(options.length);
  const id = ++context.seq;
  const send: PendingSend = {
    key: event.key,
    hash: context.hasher.hash(event.key, code),
    reply: event.reply,
    otpCode: options.returnCode ? code : '',
    cancel: noop,
  };
  context.pending.set(id, send);
  const mail = renderCodeMail(options.templates, code, options.lifespanMs);
  try {
    // The draft, code and all, stays in this call: no event or snapshot carries it.
    const sending = mailer.send({ to: [event.to], cc: [], bcc: [], replyTo: [], ...mail }, { deadline: event.deadline });
    send.cancel = () => sending.cancel();
    sending.result.then(
      () => settle(id, undefined),
      (err: unknown) => settle(id, toMailroomError(err)),
    );
  } catch (err) {
    settle(id, toMailroomError(err));
  }
}

function check(context: OtpContext, request: CheckRequest): void {
  request.reply(context.store.check(request.key, request.hash, context.now()));
}

function onSettled(context: OtpContext, event: Report<'mail.settled'>): void {
  const send = context.pending.get(event.id);
  if (send === undefined) return;
  context.pending.delete(event.id);
  const { error } = event;
  if (error !== undefined) {
    context.store.release(send.key, refundable(error));
    context.log.info('code mail failed', { code: error.code, reason: error.message });
    send.reply(error);
    return;
  }
  context.store.commit(send.key, send.hash, context.now());
  const { lifespanMs, resendCooldownMs } = context.options;
  send.reply(undefined, {
    expiresInSeconds: Math.ceil(lifespanMs / 1000),
    resendAfterSeconds: Math.ceil(resendCooldownMs / 1000),
    otpCode: send.otpCode,
  });
}

function onShutdown(context: OtpContext): void {
  for (const send of context.pending.values()) {
    send.cancel();
    context.store.release(send.key, true);
    send.reply(new MailroomError('ESHUTDOWN', 'the service is shutting down'));
  }
  context.pending.clear();
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
  initial: 'running',
  states: {
    running: {
      invoke: { id: 'sweeper', src: 'sweeper', input: ({ context }) => context.options.cleanupMs },
      on: {
        'code.check': { actions: ({ context, event }) => check(context, event) },
        'code.checks': {
          actions: ({ context, event }) => {
            for (const request of event.checks) check(context, request);
          },
        },
        'code.send': {
          actions: ({ context, event, self }) => onSend(context, event, (id, error) => self.send({ type: 'mail.settled', id, error })),
        },
        'mail.settled': { actions: ({ context, event }) => onSettled(context, event) },
        sweep: {
          actions: enqueueActions(({ context, enqueue }) => {
            const { removed, examined } = context.store.sweep(context.now(), SWEEP_SLICE);
            if (removed > 0) context.log.debug('swept', { removed, examined, live: context.store.size });
            // A full slice may leave more: carry on after the event loop had its turn.
            if (removed >= SWEEP_SLICE) enqueue.sendTo('sweeper', { type: 'sweep.more' });
          }),
        },
        shutdown: { target: 'stopped', actions: ({ context }) => onShutdown(context) },
      },
    },
    stopped: {
      type: 'final',
    },
  },
});

export type OtpActor = ActorRefFrom<typeof otpMachine>;
