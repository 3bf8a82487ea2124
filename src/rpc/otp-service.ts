// OtpService: validate, hand the request to the OTP actor, reply once.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import type { OtpActor } from '../actors/otp.js';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';
import type { CodeHasher } from '../otp/code.js';
import type { ValidateCodeResponse } from '../generated/mail/ValidateCodeResponse.js';
import { CODE_ACCEPTED } from '../otp/store.js';
import { CheckBatcher } from './check-batcher.js';
import { deadlineOf } from './deadline.js';
import { toServiceError } from './status.js';
import { codeValidator, validateSendCode } from './validate-otp.js';

export interface OtpServiceDeps {
  readonly otp: OtpActor;
  /** the actor's own: a candidate is hashed here so that no event carries a code */
  readonly hasher: CodeHasher;
  readonly codeLength: number;
  readonly maxAttempts: number;
  readonly log: Logger;
}

export function otpServiceHandlers(deps: OtpServiceDeps): OtpServiceHandlers {
  const { otp, hasher, log } = deps;
  const validateCheck = codeValidator(deps.codeLength);
  const checks = new CheckBatcher(otp);
  // Every answer ValidateCode can give, built once: the check path is hot.
  const accepted: ValidateCodeResponse = Object.freeze({ status: 'SUCCESS', isValid: true, attempts_remaining: 0 });
  const rejected: readonly ValidateCodeResponse[] = Array.from({ length: deps.maxAttempts + 1 }, (_, n) =>
    Object.freeze({ status: 'SUCCESS', isValid: false, attempts_remaining: n }),
  );
  return {
    SendCode(call, callback) {
      let request;
      try {
        request = validateSendCode(call.request.email);
      } catch (err) {
        callback(toServiceError(err) as grpc.ServiceError);
        return;
      }
      otp.send({
        type: 'code.send',
        key: request.key,
        to: request.to,
        deadline: deadlineOf(call),
        reply: (error, sent) => {
          if (error !== undefined || sent === undefined) {
            const status = toServiceError(error);
            log.debug('SendCode failed', { grpcCode: status.code, reason: status.details });
            callback(status as grpc.ServiceError);
            return;
          }
          callback(null, {
            status: 'SUCCESS',
            otpCode: sent.otpCode,
            expires_in_seconds: sent.expiresInSeconds,
            resend_after_seconds: sent.resendAfterSeconds,
          });
        },
      });
    },
    ValidateCode(call, callback) {
      let key: string;
      try {
        key = validateCheck(call.request.email, call.request.otpCode);
      } catch (err) {
        callback(toServiceError(err) as grpc.ServiceError);
        return;
      }
      checks.check(key, hasher.hash(key, call.request.otpCode), (result) => {
        callback(null, result === CODE_ACCEPTED ? accepted : (rejected[result] ?? rejected[0]));
      });
    },
  };
}
