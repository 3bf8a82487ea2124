// OtpService: answers UNIMPLEMENTED until the OTP actor lands.
import * as grpc from '@grpc/grpc-js';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';

export function otpServiceHandlers(): OtpServiceHandlers {
  const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: 'OtpService is not available yet' };
  return {
    SendCode(_call, callback) {
      callback(unimplemented);
      return;
    },
    ValidateCode(_call, callback) {
      callback(unimplemented);
      return;
    },
  };
}
