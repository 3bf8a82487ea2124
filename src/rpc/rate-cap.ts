// Rate caps kept per caller, never one bucket for everyone: a caller that
// spends its allowance (a flood of bogus checks, a runaway client) is
// refused alone. Who a caller is: its token's name or certificate subject,
// else the address it calls from (an IPv6 address by its /64, which one
// host holds whole). A caller may also name the person behind a request
// (`mailroom-rate-key` metadata, an end user's IP say), which then has a
// bucket of its own inside the caller's.
// The buckets themselves are lib/rate-cap.ts's.
import type * as grpc from '@grpc/grpc-js';
import { MailroomError } from '../errors.js';
import { callerOf } from './auth.js';
import { addressKey, peerAddress } from './peer.js';

export const RATE_KEY = 'mailroom-rate-key';
const MAX_RATE_KEY_CHARS = 256;
const RATE_KEY_SHAPE = /^[\x20-\x7e]+$/;

/** Who a call's rate caps belong to: its authenticated caller, else the address it came from. */
export function rateIdentity(call: { readonly metadata: grpc.Metadata; getPeer(): string }): string {
  const caller = callerOf(call.metadata);
  return caller !== '' ? `caller ${caller}` : `address ${addressKey(peerAddress(call.getPeer()))}`;
}

/** The caller's own rate key, when it sent one; INVALID_ARGUMENT when it is not one (its value is never repeated). */
export function rateKeyOf(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get(RATE_KEY);
  if (values.length === 0) return undefined;
  const value = values[0];
  if (values.length > 1 || typeof value !== 'string' || value.length > MAX_RATE_KEY_CHARS || !RATE_KEY_SHAPE.test(value)) {
    throw new MailroomError('EINVALID', `${RATE_KEY}: one value of 1 to ${MAX_RATE_KEY_CHARS} printable ASCII characters`);
  }
  return value;
}
