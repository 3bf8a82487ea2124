// MailService: SendMail (at once, or into the outbox), and the outbox's
// GetMessage, CancelMessage and WatchMessages. Validate, call a facade
// (Mailer, Outbox), reply once.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { MessageEvent } from '../generated/mail/MessageEvent.js';
import type { Mailer } from '../mail/mailer.js';
import type { Outbox } from '../outbox/outbox.js';
import { formatReply } from '../smtp/reply.js';
import type { Calls } from './calls.js';
import { deadlineOf } from './deadline.js';
import { callerOf } from './auth.js';
import { fromTimestamp, WIRE_STATE, wireStatus } from './message-status.js';
import { toServiceError } from './status.js';
import { validateSendEmail, type MailLimits } from './validate.js';

export interface MailServiceDeps {
  readonly mailer: Mailer;
  readonly outbox: Outbox;
  readonly calls: Calls;
  readonly limits: MailLimits;
  readonly log: Logger;
}

/** A Message-ID as SendMail returns them: angle brackets, printable ASCII. */
const MESSAGE_ID = /^<[\x21-\x3d\x3f-\x7e]{1,300}>$/;
/** A WatchMessages cursor: opaque, printable, short. */
const CURSOR = /^[\x21-\x7e]{0,100}$/;

function messageId(id: string): string {
  if (!MESSAGE_ID.test(id)) throw new MailroomError('EINVALID', 'message_id: the Message-ID SendMail returned, angle brackets included');
  return id;
}

function unknownMessage(): MailroomError {
  return new MailroomError('ENOTFOUND', 'no such message (or it ended more than OUTBOX_RETENTION_SECONDS ago)');
}

export function mailServiceHandlers(deps: MailServiceDeps): MailServiceHandlers {
  const { mailer, outbox, calls, limits, log } = deps;
  return {
    SendMail(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const caller = callerOf(call.metadata);
      const { delivery } = call.request;
      if (delivery !== 'DELIVERY_SYNC' && delivery !== 'DELIVERY_QUEUED') {
        open.fail(new MailroomError('EINVALID', 'delivery: DELIVERY_SYNC or DELIVERY_QUEUED'));
        return;
      }
      if (delivery === 'DELIVERY_QUEUED') {
        let queued;
        try {
          const draft = validateSendEmail(call.request, limits);
          const sendAt = call.request.send_at === null ? undefined : fromTimestamp(call.request.send_at);
          if (call.request.send_at !== null && sendAt === undefined) throw new MailroomError('EINVALID', 'send_at: a time from 1970 on');
          queued = outbox.queue(draft, { caller, idempotencyKey: draft.idempotencyKey, ...(sendAt !== undefined ? { sendAt } : {}) });
        } catch (err) {
          open.fail(err);
          return;
        }
        queued.then(
          (status) => open.ok({ status: 'SUCCESS', message_id: status.id, smtp_response: '', state: WIRE_STATE[status.state] }),
          (err: unknown) => open.fail(err),
        );
        return;
      }
      let sending;
      try {
        if (call.request.send_at !== null) throw new MailroomError('EINVALID', 'send_at: only with delivery DELIVERY_QUEUED');
        const draft = validateSendEmail(call.request, limits);
        sending = mailer.send(draft, { deadline: deadlineOf(call), idempotencyKey: draft.idempotencyKey, caller });
      } catch (err) {
        open.fail(err);
        return;
      }
      call.once('cancelled', () => sending.cancel());
      sending.result.then(
        (delivered) => open.ok({ status: 'SUCCESS', message_id: delivered.messageId, smtp_response: formatReply(delivered.reply), state: 'MESSAGE_STATE_SENT' }),
        (err: unknown) => {
          const status = open.fail(err);
          log.debug('SendMail failed', { caller: caller || undefined, grpcCode: status.code, reason: status.details });
        },
      );
    },

    GetMessage(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      let id: string;
      try {
        id = messageId(call.request.message_id);
      } catch (err) {
        open.fail(err);
        return;
      }
      outbox.get(id, callerOf(call.metadata)).then(
        (status) => (status === undefined ? open.fail(unknownMessage()) : open.ok(wireStatus(status))),
        (err: unknown) => open.fail(err),
      );
    },

    CancelMessage(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      let id: string;
      try {
        id = messageId(call.request.message_id);
      } catch (err) {
        open.fail(err);
        return;
      }
      outbox.cancel(id, callerOf(call.metadata)).then(
        (result) => {
          if (result.kind === 'cancelled') open.ok(wireStatus(result.status));
          else if (result.kind === 'unknown') open.fail(unknownMessage());
          else open.fail(new MailroomError('ECANCEL', `the message is ${WIRE_STATE[result.status.state]}: only a QUEUED or DEFERRED message can be cancelled`));
        },
        (err: unknown) => open.fail(err),
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
      );
      call.once('cancelled', () => watching.stop());
      watching.ended.then(
        () => call.end(),
        (err: unknown) => call.emit('error', toServiceError(err)),
      );
    },
  };
}
