// The OTP service as callers use it: methods, not actor events. It hashes a
// candidate before it leaves the caller's hands and batches the checks of
// one microtask run into one event (CheckBatcher); the actor does the rest,
// in its mailbox's order.
import { withResolvers } from '../lib/resolvers.js';
import type { Address } from '../mail/address.js';
import { CheckBatcher, type CheckAnswers } from './check-batcher.js';
import type { CodeHasher } from './code.js';
import type { CodeSent, OtpMailbox } from './requests.js';

export class Otp<C> {
  private readonly checks: CheckBatcher<C>;

  /** `answers`: how each check's caller `C` hears its result */
  constructor(
    private readonly mailbox: OtpMailbox,
    private readonly hasher: CodeHasher,
    answers: CheckAnswers<C>,
  ) {
    this.checks = new CheckBatcher(mailbox, answers);
  }

  /** Mails a new code to `to`, filed under `key` (the normalised address); its mail takes `owner`'s turn and share. */
  sendCode(key: string, to: Address, deadline: number, owner: string): Promise<CodeSent> {
    const { reply, answer } = withResolvers<CodeSent>();
    this.mailbox.send({ type: 'code.send', key, to, deadline, owner, reply });
    return answer;
  }

  /** Checks `code` for `key`; `caller` hears CODE_ACCEPTED, the wrong checks left, or why not. */
  check(key: string, code: string, caller: C): void {
    this.checks.check(key, this.hasher.hash(key, code), caller);
  }
}
