// OtpService: validate, ask the OTP service (otp/otp.ts), reply once.
import type { Logger } from 'winston';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';
import type { CodeHasher } from '../otp/code.js';
import { Otp } from '../otp/otp.js';
import type { CodeSent, OtpMailbox } from '../otp/requests.js';
import type { SendCodeResponse } from '../generated/mail/SendCodeResponse.js';
import type { ValidateCodeResponse } from '../generated/mail/ValidateCodeResponse.js';
import { CODE_ACCEPTED } from '../otp/store.js';
import { OpenCall, type Calls } from './calls.js';
import { OtpCaps, type OtpRateLimits } from './otp-caps.js';
import type { SharedCaps } from '../lib/rate-cap.js';
import { deadlineOf } from './deadline.js';
import { codeValidator, validateSendCode } from './validate-otp.js';
import type { RecipientGate } from '../bounce/recipient-gate.js';
import { beginSpan, inSpan, type EndSpan } from '../lib/tracing.js';
import { callerOf } from './auth.js';
import { rateIdentity } from './rate-cap.js';
import { isMailroomError } from '../errors.js';
import type { ServiceMetrics } from '../metrics/service-metrics.js';

/** A check's caller: its call, with the span to end when it is answered while tracing is on. */
type Checking = OpenCall<ValidateCodeResponse> | { readonly open: OpenCall<ValidateCodeResponse>; readonly end: EndSpan };

/** The call a check answers, its span ended first. */
function answered(c: Checking, error?: unknown): OpenCall<ValidateCodeResponse> {
  if (c instanceof OpenCall) return c;
  c.end(error);
  return c.open;
}

export interface OtpServiceDeps {
  /** the OTP actor's mailbox */
  readonly mailbox: OtpMailbox;
  readonly calls: Calls;
  /** the actor's own: a candidate is hashed before it is asked, so that no event carries a code */
  readonly hasher: CodeHasher;
  readonly codeLength: number;
  /** per caller and per rate key */
  readonly limits: OtpRateLimits;
  /** with REDIS_URL: the per-key caps, shared by every replica */
  readonly sharedCaps?: SharedCaps;
  readonly metrics: ServiceMetrics;
  readonly log: Logger;
  /** the suppression list (bounce/recipient-gate.ts) */
  readonly gate?: RecipientGate | undefined;
}

/** How a refused SendCode counts: a limit (rate, cooldown, a send under way), or the request itself. */
function refusal(err: unknown): 'refused' | 'invalid' | 'failed' {
  if (!isMailroomError(err)) return 'failed';
  if (err.code === 'EINVALID' || err.code === 'ESUPPRESSED') return 'invalid';
  return err.code === 'ERATELIMIT' ? 'refused' : 'failed';
}

function sentResponse(sent: CodeSent): SendCodeResponse {
  return { status: 'SUCCESS', otpCode: sent.otpCode, expires_in_seconds: sent.expiresInSeconds, resend_after_seconds: sent.resendAfterSeconds };
}

export function otpServiceHandlers(deps: OtpServiceDeps): OtpServiceHandlers {
  const { calls, metrics, log } = deps;
  const validateCheck = codeValidator(deps.codeLength);
  const caps = new OtpCaps(deps.limits, Date.now, deps.sharedCaps);
  // Both answers ValidateCode can give, built once: the check path is hot.
  // attempts_remaining is always 0: a count for a live code and 0 for none
  // told an attacker which addresses have a code worth guessing.
  const accepted: ValidateCodeResponse = Object.freeze({ status: 'SUCCESS', isValid: true, attempts_remaining: 0 });
  const rejected: ValidateCodeResponse = Object.freeze({ status: 'SUCCESS', isValid: false, attempts_remaining: 0 });
  const otp = new Otp<Checking>(deps.mailbox, deps.hasher, {
    answer: (c, result) => {
      const valid = result === CODE_ACCEPTED;
      metrics.otpChecked(valid ? 'valid' : 'invalid');
      answered(c).ok(valid ? accepted : rejected);
    },
    fail: (c, error) => {
      metrics.otpChecked('failed');
      answered(c, error).fail(error);
    },
  });
  return {
    SendCode(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const caller = callerOf(call.metadata);
      const refuse = (err: unknown): void => {
        metrics.otpSent(refusal(err));
        open.fail(err);
      };
      let request: ReturnType<typeof validateSendCode>;
      let shared: Promise<void> | undefined;
      try {
        request = validateSendCode(call.request.email);
        deps.gate?.checkOne(request.to.address);
        shared = caps.send(call);
      } catch (err) {
        refuse(err);
        return;
      }
      const send = (): void => {
        inSpan('mailroom otp send-code', () => otp.sendCode(request.key, request.to, deadlineOf(call), rateIdentity(call))).then(
          (sent) => {
            metrics.otpSent('sent');
            open.ok(sentResponse(sent));
          },
          (err: unknown) => {
            metrics.otpSent(refusal(err));
            const status = open.fail(err);
            log.debug('SendCode failed', { caller: caller || undefined, grpcCode: status.code, reason: status.details });
          },
        );
      };
      if (shared === undefined) send();
      else shared.then(send, refuse);
    },
    ValidateCode(call, callback) {
      const open = calls.open(callback);
      if (open === undefined) return;
      const refuse = (err: unknown): void => {
        metrics.otpChecked('refused');
        open.fail(err);
      };
      let key: string;
      let shared: Promise<void> | undefined;
      try {
        key = validateCheck(call.request.email, call.request.otpCode);
        shared = caps.check(call);
      } catch (err) {
        refuse(err);
        return;
      }
      const check = (): void => {
        const end = beginSpan('mailroom otp check');
        otp.check(key, call.request.otpCode, end === undefined ? open : { open, end });
      };
      if (shared === undefined) check();
      else shared.then(check, refuse);
    },
  };
}
