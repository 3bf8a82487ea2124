// The one normalisation of an OTP address, used alike by SendCode and
// ValidateCode so that a code sent to one spelling is found under another.
//
// Trim surrounding blanks, validate as a bare address (no display name), put
// the domain in lower-case ASCII (punycode), and lower-case the local part
// too. RFC 5321 lets a server treat local parts case-sensitively, but the
// providers people use do not, and a user who types "Ann@" on one screen and
// "ann@" on the next means the same mailbox. The mail itself goes to the
// address as typed (domain normalised), the key is the lower-cased form.
import { parseAddress } from '../mail/address.js';

export type OtpAddress = { ok: true; key: string; address: string } | { ok: false; reason: string };

export function normaliseOtpAddress(input: string): OtpAddress {
  const trimmed = input.trim();
  if (trimmed === '') return { ok: false, reason: 'an address is required' };
  const parsed = parseAddress(trimmed);
  if (!parsed.ok) return parsed;
  return { ok: true, key: parsed.value.toLowerCase(), address: parsed.value };
}
