// A stored status as the wire says it: MessageState names, timestamps.
import type { MessageStatus as WireStatus } from '../generated/mail/MessageStatus.js';
import type { MessageState as WireState } from '../generated/mail/MessageState.js';
import type { Timestamp } from '../generated/google/protobuf/Timestamp.js';
import type { MessageState } from '../outbox/lifecycle.js';
import type { BounceKind, MessageStatus } from '../outbox/store.js';
import type { BounceKind as WireKind } from '../generated/mail/BounceKind.js';

export const WIRE_STATE: Readonly<Record<MessageState, WireState>> = {
  queued: 'MESSAGE_STATE_QUEUED',
  sending: 'MESSAGE_STATE_SENDING',
  sent: 'MESSAGE_STATE_SENT',
  deferred: 'MESSAGE_STATE_DEFERRED',
  failed: 'MESSAGE_STATE_FAILED',
  cancelled: 'MESSAGE_STATE_CANCELLED',
  bounced: 'MESSAGE_STATE_BOUNCED',
  complained: 'MESSAGE_STATE_COMPLAINED',
};

const WIRE_KIND: Readonly<Record<BounceKind, WireKind>> = { hard: 'BOUNCE_KIND_HARD', soft: 'BOUNCE_KIND_SOFT', complaint: 'BOUNCE_KIND_COMPLAINT' };

export function timestamp(ms: number): Timestamp {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** Epoch ms of a wire timestamp; undefined when it is unset or out of range (nanos 0 to 999,999,999, as protobuf's Timestamp says). */
export function fromTimestamp(t: { seconds: string; nanos: number } | null | undefined): number | undefined {
  if (t === null || t === undefined) return undefined;
  if (!Number.isInteger(t.nanos) || t.nanos < 0 || t.nanos > 999_999_999) return undefined;
  const ms = Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : undefined;
}

export function wireStatus(s: MessageStatus): WireStatus {
  return {
    message_id: s.id,
    state: WIRE_STATE[s.state],
    attempts: s.attempts,
    last_response: s.lastResponse,
    error_code: s.errorCode,
    accepted_at: timestamp(s.acceptedAt),
    updated_at: timestamp(s.updatedAt),
    next_attempt_at: s.nextAttemptAt > 0 ? timestamp(s.nextAttemptAt) : null,
    bounces: (s.bounces ?? []).map((b) => ({ recipient_index: b.recipient, kind: WIRE_KIND[b.kind], status: b.status, diagnostic: b.diagnostic, at: timestamp(b.at) })),
  };
}
