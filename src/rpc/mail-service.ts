// MailService: SendMail (at once, or into the outbox) and SendMailBatch (as
// many SendMails, one answer), and the outbox's GetMessage, CancelMessage
// and WatchMessages. Validate, call a facade (Mailer, Outbox), reply once.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { MessageEvent } from '../generated/mail/MessageEvent.js';
import type { SendEmailRequest__Output } from '../generated/mail/SendEmailRequest.js';
import type { SendEmailResponse } from '../generated/mail/SendEmailResponse.js';
import type { SendMailResult } from '../generated/mail/SendMailResult.js';
import type { Mailer } from '../mail/mailer.js';
import type { Outbox, QueueBatch } from '../outbox/outbox.js';
import { formatReply } from '../smtp/reply.js';
import type { Calls, OpenCall } from './calls.js';
import { deadlineOf } from './deadline.js';
import { callerOf } from './auth.js';
import { rateIdentity } from './rate-cap.js';
import { laneOf } from '../mail/lane.js';
import { fromTimestamp, WIRE_STATE, wireStatus } from './message-status.js';
import { toServiceError } from './status.js';
import { validateSendEmail, type MailLimits } from './validate.js';
import type { RecipientGate } from '../bounce/recipient-gate.js';

export interface MailServiceDeps {
  readonly mailer: Mailer;
  readonly outbox: Outbox;
  readonly calls: Calls;
  readonly limits: MailLimits;
  readonly log: Logger;
  /** the suppression list and the simulator's rule (bounce/recipient-gate.ts) */
  readonly gate?: RecipientGate | undefined;
}

/** A Message-ID as SendMail returns them: angle brackets, printable ASCII. */
const MESSAGE_ID = /^<[\x21-\x3d\x3f-\x7e]{1,300}>$/;
/** A WatchMessages cursor: opaque, printable, short. */
const CURSOR = /^[\x21-\x7e]{0,100}$/;

function messageId(id: string): string {
  if (!MESSAGE_ID.test(id)) throw new MailroomError('EINVALID', 'message_id: the Message-ID SendMail returned, angle brackets included');
  return id;
}

/** A message's outcome in a batch: its response, or the status it would have failed with alone. */
interface Sending {
  readonly result: Promise<SendEmailResponse>;
  cancel(): void;
}

/** A failed message of a batch as its result: the status, text and catalogue code a lone call would have had. */
function failedResult(err: unknown): SendMailResult {
  const status = toServiceError(err);
  return { code: status.code ?? grpc.status.INTERNAL, message: status.details ?? '', error_code: String(status.metadata?.get('mailroom-error')[0] ?? '') };
}

/** Who sends: the authenticated caller ('' when none), and whose turn its mail takes (rate-cap.ts's identity). */
interface Who {
  readonly caller: string;
  readonly owner: string;
}

function whoCalls(call: { readonly metadata: grpc.Metadata; getPeer(): string }): Who {
  return { caller: callerOf(call.metadata), owner: rateIdentity(call) };
}

function unknownMessage(): MailroomError {
  return new MailroomError('ENOTFOUND', 'no such message (or it ended more than OUTBOX_RETENTION_SECONDS ago)');
}

export function mailServiceHandlers(deps: MailServiceDeps): MailServiceHandlers {
  const { mailer, outbox, calls, limits, log, gate } = deps;

  /** A call about one message: its id checked (INVALID_ARGUMENT when it is not one), then `then`. */
  const aboutMessage = <T>(callback: grpc.sendUnaryData<T>, raw: string, then: (open: OpenCall<T>, id: string) => void): void => {
    const open = calls.open(callback);
    if (open === undefined) return;
    let id: string;
    try {
      id = messageId(raw);
    } catch (err) {
      open.fail(err);
      return;
    }
    then(open, id);
  };

  /** One request as SendMail takes it: validated, then into the outbox (QUEUED) or to the mailer. Throws what is wrong with it. */
  const send = (request: SendEmailRequest__Output, who: Who, deadline: number, queued?: QueueBatch): Sending => {
    const { delivery, priority } = request;
    const { caller, owner } = who;
    if (delivery !== 'DELIVERY_SYNC' && delivery !== 'DELIVERY_QUEUED') throw new MailroomError('EINVALID', 'delivery: DELIVERY_SYNC or DELIVERY_QUEUED');
    if (priority !== 'PRIORITY_NORMAL' && priority !== 'PRIORITY_HIGH' && priority !== 'PRIORITY_BULK') throw new MailroomError('EINVALID', 'priority: PRIORITY_NORMAL, PRIORITY_HIGH or PRIORITY_BULK');
    const lane = laneOf(priority, delivery === 'DELIVERY_SYNC');
    if (delivery === 'DELIVERY_QUEUED') {
      const draft = validateSendEmail(request, limits);
      gate?.check(draft);
      const sendAt = request.send_at === null ? undefined : fromTimestamp(request.send_at);
      if (request.send_at !== null && sendAt === undefined) throw new MailroomError('EINVALID', 'send_at: a time from 1970 on, nanos from 0 to 999999999');
      const options = { caller, owner, lane, idempotencyKey: draft.idempotencyKey, ...(sendAt !== undefined ? { sendAt } : {}) };
      const status = queued !== undefined ? queued.add(draft, options) : outbox.queue(draft, options);
      return {
        result: status.then((s) => ({ status: 'SUCCESS', message_id: s.id, smtp_response: '', state: WIRE_STATE[s.state] })),
        // Stored is stored: a caller that goes away does not unsend it.
        cancel: () => undefined,
      };
    }
    if (request.send_at !== null) throw new MailroomError('EINVALID', 'send_at: only with delivery DELIVERY_QUEUED');
    const draft = validateSendEmail(request, limits);
    gate?.check(draft);
    const sending = mailer.send(draft, { deadline, idempotencyKey: draft.idempotencyKey, caller, owner, lane });
    return {
      result: sending.result.then((d) => ({ status: 'SUCCESS', message_id: d.messageId, smtp_response: formatReply(d.reply), state: 'MESSAGE_STATE_SENT' })),
      cancel: () => sending.cancel(),
    };
  };

  return {
    SendMail(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const who = whoCalls(call);
      let sending: Sending;
      try {
        sending = send(call.request, who, deadlineOf(call));
      } catch (err) {
        open.fail(err);
        return;
      }
      call.once('cancelled', () => sending.cancel());
      sending.result.then(
        (response) => open.ok(response),
        (err: unknown) => {
          const status = open.fail(err);
          log.debug('SendMail failed', { caller: who.caller || undefined, grpcCode: status.code, reason: status.details });
        },
      );
    },

    SendMailBatch(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const { messages } = call.request;
      if (messages.length === 0 || messages.length > limits.maxBatch) {
        open.fail(new MailroomError('EINVALID', `messages: 1 to ${limits.maxBatch} (MAX_BATCH; got ${messages.length})`));
        return;
      }
      const who = whoCalls(call);
      const deadline = deadlineOf(call);
      // Queued messages go to the outbox together: one durable commit for all of them.
      const queued = outbox.batch();
      const sendings = messages.map((request): Sending => {
        try {
          return send(request, who, deadline, queued);
        } catch (err) {
          return { result: Promise.reject(err), cancel: () => undefined };
        }
      });
      queued.close();
      call.once('cancelled', () => {
        for (const s of sendings) s.cancel();
      });
      Promise.allSettled(sendings.map((s) => s.result)).then((outcomes) =>
        open.ok({ results: outcomes.map((o) => (o.status === 'fulfilled' ? { response: o.value, code: 0, message: '', error_code: '' } : failedResult(o.reason))) }),
      );
    },

    GetMessage(call, callback) {
      aboutMessage(callback, call.request.message_id, (open, id) =>
        outbox.get(id, callerOf(call.metadata)).then(
          (status) => (status === undefined ? open.fail(unknownMessage()) : open.ok(wireStatus(status))),
          (err: unknown) => open.fail(err),
        ),
      );
    },

    CancelMessage(call, callback) {
      aboutMessage(callback, call.request.message_id, (open, id) =>
        outbox.cancel(id, callerOf(call.metadata)).then(
          (result) => {
            if (result.kind === 'cancelled') open.ok(wireStatus(result.status));
            else if (result.kind === 'unknown') open.fail(unknownMessage());
            else open.fail(new MailroomError('ECANCEL', `the message is ${WIRE_STATE[result.status.state]}: only a QUEUED or DEFERRED message can be cancelled`));
          },
          (err: unknown) => open.fail(err),
        ),
      );
    },

    WatchMessages(call: grpc.ServerWritableStream<{ after: string }, MessageEvent>) {
      const { after } = call.request;
      if (!CURSOR.test(after)) {
        call.emit('error', toServiceError(new MailroomError('EINVALID', 'after: a cursor from an earlier event, or empty')));
        return;
      }
      const watching = outbox.watch(
        callerOf(call.metadata),
        after,
        (event) => call.write({ cursor: event.cursor, status: wireStatus(event.status) }),
        (go) => call.once('drain', go),
        // Response headers before any event: a caller that waits for them knows that nothing it does later is missed.
        () => call.sendMetadata(new grpc.Metadata()),
      );
      call.once('cancelled', () => watching.stop());
      watching.ended.then(
        () => call.end(),
        (err: unknown) => call.emit('error', toServiceError(err)),
      );
    },
  };
}
