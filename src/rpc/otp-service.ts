// OtpService: validate, hand the request to the OTP actor, reply once.
import type { Logger } from 'winston';
import type { CodeSent, OtpActor } from '../actors/otp.js';
import { awaitReply } from '../actors/reply.js';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';
import type { CodeHasher } from '../otp/code.js';
import type { SendCodeResponse } from '../generated/mail/SendCodeResponse.js';
import type { ValidateCodeResponse } from '../generated/mail/ValidateCodeResponse.js';
import { CODE_ACCEPTED } from '../otp/store.js';
import type { Calls, OpenCall } from './calls.js';
import { CheckBatcher } from './check-batcher.js';
import { deadlineOf } from './deadline.js';
import { codeValidator, validateSendCode } from './validate-otp.js';

export interface OtpServiceDeps {
  readonly otp: OtpActor;
  readonly calls: Calls;
  /** the actor's own: a candidate is hashed here so that no event carries a code */
  readonly hasher: CodeHasher;
  readonly codeLength: number;
  readonly maxAttempts: number;
  readonly log: Logger;
}

function sentResponse(sent: CodeSent): SendCodeResponse {
  return { status: 'SUCCESS', otpCode: sent.otpCode, expires_in_seconds: sent.expiresInSeconds, resend_after_seconds: sent.resendAfterSeconds };
}

export function otpServiceHandlers(deps: OtpServiceDeps): OtpServiceHandlers {
  const { otp, calls, hasher, log } = deps;
  const validateCheck = codeValidator(deps.codeLength);
  // Every answer ValidateCode can give, built once: the check path is hot.
  const accepted: ValidateCodeResponse = Object.freeze({ status: 'SUCCESS', isValid: true, attempts_remaining: 0 });
  const rejected: readonly ValidateCodeResponse[] = Array.from({ length: deps.maxAttempts + 1 }, (_, n) =>
    Object.freeze({ status: 'SUCCESS', isValid: false, attempts_remaining: n }),
  );
  const checks = new CheckBatcher<OpenCall<ValidateCodeResponse>>(otp, {
    answer: (open, result) => open.ok(result === CODE_ACCEPTED ? accepted : (rejected[result] ?? (rejected[0] as ValidateCodeResponse))),
    fail: (open, error) => open.fail(error),
  });
  return {
    SendCode(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      let request;
      try {
        request = validateSendCode(call.request.email);
      } catch (err) {
        open.fail(err);
        return;
      }
      const { reply, answer } = awaitReply<CodeSent>();
      otp.send({ type: 'code.send', key: request.key, to: request.to, deadline: deadlineOf(call), reply });
      answer.then(
        (sent) => open.ok(sentResponse(sent)),
        (err: unknown) => {
          const status = open.fail(err);
          log.debug('SendCode failed', { grpcCode: status.code, reason: status.details });
        },
      );
    },
    ValidateCode(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      let key: string;
      try {
        key = validateCheck(call.request.email, call.request.otpCode);
      } catch (err) {
        open.fail(err);
        return;
      }
      checks.check(key, hasher.hash(key, call.request.otpCode), open);
    },
  };
}
