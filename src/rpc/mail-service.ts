// MailService.SendMail: validate, enqueue, reply once the relay accepted.
import type { Logger } from 'winston';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { Mailer } from '../mail/mailer.js';
import { formatReply } from '../smtp/reply.js';
import type { Calls } from './calls.js';
import { deadlineOf } from './deadline.js';
import { callerOf } from './auth.js';
import { validateSendEmail, type MailLimits } from './validate.js';

export function mailServiceHandlers(deps: { mailer: Mailer; calls: Calls; limits: MailLimits; log: Logger }): MailServiceHandlers {
  const { mailer, calls, limits, log } = deps;
  return {
    SendMail(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const caller = callerOf(call.metadata);
      let sending;
      try {
        const draft = validateSendEmail(call.request, limits);
        sending = mailer.send(draft, { deadline: deadlineOf(call), idempotencyKey: draft.idempotencyKey, caller });
      } catch (err) {
        open.fail(err);
        return;
      }
      call.once('cancelled', () => sending.cancel());
      sending.result.then(
        (delivered) => open.ok({ status: 'SUCCESS', message_id: delivered.messageId, smtp_response: formatReply(delivered.reply) }),
        (err: unknown) => {
          const status = open.fail(err);
          log.debug('SendMail failed', { caller: caller || undefined, grpcCode: status.code, reason: status.details });
        },
      );
    },
  };
}
