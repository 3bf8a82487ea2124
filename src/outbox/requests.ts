// What the outbox asks of the supervisor, the one writer of its records:
// store these new messages; cancel that one. They reach its mailbox through
// a stream (outbox$), as SendMail's jobs do through jobs$.
import type { Resolvers } from '../lib/resolvers.js';
import type { Acceptance, Cancellation, NewMessage } from './store.js';

export type OutboxRequest =
  | { readonly type: 'accept'; readonly message: NewMessage; readonly reply: Resolvers<Acceptance> }
  | { readonly type: 'cancel'; readonly id: string; readonly caller: string; readonly reply: Resolvers<Cancellation> };

/** The outbox's rules (config.outbox). */
export interface OutboxSettings {
  /** a transient failure defers a message by this, doubling per attempt, with jitter */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** after this long from acceptance, a message not sent fails EEXPIRED */
  readonly maxAgeMs: number;
  /** a final message's status (and its events) are kept this long */
  readonly retentionMs: number;
  /** send_at at most this far ahead */
  readonly maxDelayMs: number;
  /** bytes of stored message text */
  readonly maxBytes: number;
}
