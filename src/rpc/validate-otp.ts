// OtpService request validation. A bad request changes nothing: it is
// refused here, before the OTP actor sees it.
import { MailroomError } from '../errors.js';
import type { Address } from '../mail/address.js';
import { normaliseOtpAddress } from '../otp/address.js';

export function validateSendCode(email: string): { key: string; to: Address } {
  const parsed = normaliseOtpAddress(email);
  if (!parsed.ok) throw new MailroomError('EINVALID', `email: ${parsed.reason}`);
  return { key: parsed.key, to: { name: '', address: parsed.address } };
}

/** Returns a checker for ValidateCode requests of codes with `length` ASCII digits. */
export function codeValidator(length: number): (email: string, code: string) => string {
  const shape = new RegExp(`^[0-9]{${length}}$`);
  return (email, code) => {
    const parsed = normaliseOtpAddress(email);
    const problems: string[] = [];
    if (!parsed.ok) problems.push(`email: ${parsed.reason}`);
    if (!shape.test(code)) problems.push(`otpCode: expected ${length} digits`);
    if (!parsed.ok || problems.length > 0) throw new MailroomError('EINVALID', problems.join('; '));
    return parsed.key;
  };
}
