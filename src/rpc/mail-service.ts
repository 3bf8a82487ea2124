// MailService.SendMail: validate, enqueue, reply once the relay accepted.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { Mailer } from '../mail/mailer.js';
import { formatReply } from '../smtp/reply.js';
import { deadlineOf } from './deadline.js';
import { toServiceError } from './status.js';
import { validateSendEmail, type MailLimits } from './validate.js';

export function mailServiceHandlers(deps: { mailer: Mailer; limits: MailLimits; log: Logger }): MailServiceHandlers {
  const { mailer, limits, log } = deps;
  return {
    SendMail(call, callback) {
      let sending;
      try {
        const draft = validateSendEmail(call.request, limits);
        sending = mailer.send(draft, { deadline: deadlineOf(call), idempotencyKey: draft.idempotencyKey });
      } catch (err) {
        callback(toServiceError(err) as grpc.ServiceError);
        return;
      }
      call.once('cancelled', () => sending.cancel());
      sending.result.then(
        (delivered) => {
          callback(null, { status: 'SUCCESS', message_id: delivered.messageId, smtp_response: formatReply(delivered.reply) });
        },
        (err: unknown) => {
          const status = toServiceError(err);
          log.debug('SendMail failed', { grpcCode: status.code, reason: status.details });
          callback(status as grpc.ServiceError);
        },
      );
    },
  };
}
