// What callers ask of the OTP actor, and what it answers: the events its
// mailbox takes from outside. The facade (otp/otp.ts) makes them; the actor
// (actors/otp.ts) handles them. A check carries its candidate already hashed,
// so no event carries a code an inspector could read.
import type { Address } from '../mail/address.js';
import type { Resolvers } from '../lib/resolvers.js';
import type { CodeHash } from './code.js';

export interface CodeSent {
  readonly expiresInSeconds: number;
  readonly resendAfterSeconds: number;
  /** '' unless OTP_RETURN_CODE=true */
  readonly otpCode: string;
}

export interface CheckRequest {
  /** the normalised address */
  readonly key: string;
  readonly hash: CodeHash;
}

export type OtpRequest =
  /** key: the normalised address; to: where the mail goes */
  /** `owner`: whose turn and share the code mail takes (the caller, as for SendMail) */
  | { type: 'code.send'; key: string; to: Address; deadline: number; owner: string; reply: Resolvers<CodeSent> }
  /**
   * Checks that reached the service together (one microtask run, see
   * CheckBatcher), answered in order: each result is CODE_ACCEPTED, or the
   * wrong checks the live code has left (0 when none).
   */
  | { type: 'code.checks'; checks: readonly CheckRequest[]; reply: Resolvers<number[]> };

/** Where OTP requests go: the OTP actor's mailbox. */
export interface OtpMailbox {
  send(request: OtpRequest): void;
}
