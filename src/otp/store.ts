// What the OTP actor keeps, behind an interface. Each method is one atomic
// step of the protocol (reserve a send, make its code live or release it,
// check a code, sweep), so that a shared store (Redis, one script per method)
// can replace the in-memory one when several replicas serve the same users.
// Every method takes `now` (epoch ms): the store has no clock of its own.
//
// A method answers at once (in memory) or later (over the network: a
// promise, rejected with UNAVAILABLE when the store cannot be reached). The
// OTP actor issues them in the order of its mailbox either way, and a store
// runs them in that order.
import type { CodeHash } from './code.js';

export interface OtpLimits {
  readonly lifespanMs: number;
  readonly maxAttempts: number;
  readonly resendCooldownMs: number;
  readonly maxSendsPerHour: number;
}

export type Reservation =
  | { readonly ok: true }
  /**
   * pending: a code mail for this address is on its way; cooldown: the live
   * code is too young to replace; hourly: OTP_MAX_SENDS_PER_HOUR reached
   */
  | { readonly ok: false; readonly reason: 'pending' | 'cooldown' | 'hourly'; readonly retryAfterMs: number };

/** What a check answers when the code matched; it is consumed. */
export const CODE_ACCEPTED = -1;

/** A live code as stored: never the code itself. */
export interface StoredCode {
  readonly hash: CodeHash;
  /** the code mail was accepted lifespanMs before this, epoch ms */
  readonly expiresAt: number;
  attemptsLeft: number;
}

export interface SweepResult {
  readonly removed: number;
  /** entries looked at: removed ones plus the first one still live in each collection */
  readonly examined: number;
}

/** At once, or later. */
export type Answer<T> = T | Promise<T>;

/** Hands an answer to `done` (at once when it is there) or its failure to `failed`. */
export function whenAnswered<T>(answer: Answer<T>, done: (value: T) => void, failed: (err: unknown) => void): void {
  if (answer instanceof Promise) answer.then(done, failed);
  else done(answer);
}

export interface OtpStore {
  /**
   * Claims a send for the address when no send is in flight, the live code
   * (if any) is past its cooldown and the hourly budget allows; the claim
   * counts against the budget at once, so parallel requests cannot overrun it.
   */
  reserve(key: string, now: number): Answer<Reservation>;
  /** The code mail was accepted: this hash replaces any live code for the address. */
  commit(key: string, hash: CodeHash, now: number): Answer<void>;
  /** The code mail failed: drop the claim; `refund` gives the send back to the hourly budget. */
  release(key: string, refund: boolean, now: number): Answer<void>;
  /**
   * Compares the candidate hash with the live code in constant time (with a
   * dummy when there is none, so every outcome takes the same path). A match
   * deletes the code and answers CODE_ACCEPTED; otherwise the answer is the
   * number of wrong checks the live code has left (0 when none is live), and
   * a code that runs out of them is deleted.
   */
  check(key: string, candidate: CodeHash, now: number): Answer<number>;
  /**
   * Removes what has expired, at most `limit` entries (all when omitted);
   * costs time in proportion to what it removes. A store that expires its
   * entries itself removes nothing here.
   */
  sweep(now: number, limit?: number): Answer<SweepResult>;
  /** Live or not yet swept codes; NaN when the store does not count them. */
  readonly size: number;
  /** The stored record of an address (diagnostics and tests): a hash, never a code. */
  peek(key: string): Answer<Readonly<StoredCode> | undefined>;
}
