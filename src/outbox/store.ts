// What the outbox keeps, behind one interface: SQLite on this machine
// (outbox/sqlite-store.ts, the default), or Redis for several replicas
// (redis/outbox-store.ts). Each write method is one durable commit: when its
// promise resolves, what it wrote survives a crash and a power cut. The
// store is the one writer of a message's state in this process: callers
// accept and cancel through it directly, the supervisor's outbox child
// claims and records outcomes; the message machine (lifecycle.ts) judges
// every change and outbox/policy.ts says what goes with it.
//
// A store that cannot write (a full disk, a dead worker, Redis away) says
// so through onHealth and fails each call fast (ESTORE, or EQUEUEFULL for a
// new message on a full disk); outcomes it could not write it keeps, and
// writes once it is up again. Whoever watches its health (the supervisor)
// asks it to probe() after a backoff: nothing in a store retries in a loop.
//
// A record is a status: it never holds the message's subject, body or
// addresses in clear. The message's text (and its envelope) is stored beside
// it while the message may still be sent, and deleted when it is final.
import type { MailroomError } from '../errors.js';
import type { Envelope } from '../mail/envelope.js';
import type { Lane } from '../mail/lane.js';
import type { MessageEventType, MessageState } from './lifecycle.js';

export interface MessageStatus {
  readonly id: string;
  readonly state: MessageState;
  readonly attempts: number;
  /** the relay's last reply, addresses masked ('' before any) */
  readonly lastResponse: string;
  /** the catalogue code of the last failure (FAILED: why it ended) */
  readonly errorCode: string;
  readonly acceptedAt: number;
  readonly updatedAt: number;
  /** when it is due next (QUEUED, DEFERRED); 0 otherwise */
  readonly nextAttemptAt: number;
  /** delivery reports that came back after SENT (bounce/), oldest first */
  readonly bounces?: readonly BounceRecord[];
}

export type BounceKind = 'hard' | 'soft' | 'complaint';

/** One recipient's delivery report, as a status carries it. */
export interface BounceRecord {
  /** position among the envelope recipients (to, cc, bcc, in request order) */
  readonly recipient: number;
  readonly kind: BounceKind;
  /** the enhanced status code, e.g. "5.1.1" ('' for a complaint) */
  readonly status: string;
  /** the remote server's text, addresses masked */
  readonly diagnostic: string;
  readonly at: number;
}

/** What a message's delivery reports are matched by, while BOUNCE_DOMAIN is set (bounce/return-path.ts). */
export interface ReturnPath {
  /** the key its VERP token names */
  readonly key: string;
  /** each envelope recipient's digest (bounce/address-key.ts), in envelope order */
  readonly recipients: readonly string[];
}

/** A message sent in SYNC mode: a status record of it, no text, so that its delivery reports land somewhere. */
export interface SentMessage {
  readonly id: string;
  readonly caller: string;
  readonly acceptedAt: number;
  readonly at: number;
  readonly attempts: number;
  readonly response: string;
  readonly returnPath: ReturnPath;
  /** with tracing on: the traceparent of the call that sent it */
  readonly trace?: string | undefined;
}

/** One recipient's part of a delivery report. */
export interface ReportItem {
  /** the digest of the address it names; undefined when the report does not say (an ARF report that redacts it) */
  readonly digest: string | undefined;
  readonly kind: BounceKind;
  readonly status: string;
  readonly diagnostic: string;
}

/** A delivery report to apply to the message its return path names. */
export interface Report {
  readonly key: string;
  readonly items: readonly ReportItem[];
  readonly at: number;
  /** items whose address is suppressed by it (hard bounces and complaints, unless simulated), with their masked address */
  readonly suppress: readonly { readonly digest: string; readonly masked: string }[];
  /** a complaint that redacts its recipient suppresses the message's one recipient (false for the simulator's) */
  readonly suppressRedacted: boolean;
}

export type ReportOutcome =
  /** `suppressed`: the digests it put on the suppression list (or found there) */
  | { readonly kind: 'applied'; readonly status: MessageStatus; readonly suppressed: readonly string[]; readonly trace?: string | undefined }
  /** no message mailroom sent has that key (purged, never sent, not ours) */
  | { readonly kind: 'unknown' }
  /** it names no recipient of the message, or the message was never sent */
  | { readonly kind: 'unmatched' };

export type SuppressionReason = 'bounce' | 'complaint' | 'manual';

/** An address mailroom no longer mails: stored by digest, shown masked. */
export interface SuppressionEntry {
  readonly digest: string;
  readonly masked: string;
  readonly reason: SuppressionReason;
  readonly since: number;
  /** the message whose report added it ('' for manual) */
  readonly messageId: string;
}

export interface StatusEvent {
  /** where a watcher resumes: opaque, ordered */
  readonly cursor: string;
  readonly status: MessageStatus;
  /** the connection of the attempt it reports, if any (for the inspector) */
  readonly connection?: string;
}

export interface NewMessage {
  readonly id: string;
  /** who sent it ('' when callers are not authenticated): only it sees the message */
  readonly caller: string;
  /** whose turn it takes in its lane, and whose share of OUTBOX_MAX_BYTES it spends (lane.ts) */
  readonly owner: string;
  readonly lane: Lane;
  readonly envelope: Envelope;
  readonly raw: string;
  readonly acceptedAt: number;
  /** send_at, or acceptedAt */
  readonly dueAt: number;
  /** acceptedAt + OUTBOX_MAX_AGE_SECONDS: then it fails EEXPIRED */
  readonly expiresAt: number;
  /** an idempotency key, already scoped to the caller and hashed, and what the request was */
  readonly idempotency?: { readonly key: string; readonly fingerprint: string };
  /** while BOUNCE_DOMAIN is set */
  readonly returnPath?: ReturnPath;
  /** with tracing on: the traceparent of its PRODUCER span, which its deliveries link to */
  readonly trace?: string | undefined;
}

export type Acceptance =
  | { readonly kind: 'accepted'; readonly status: MessageStatus }
  /** the idempotency key names a message stored before, from the same request */
  | { readonly kind: 'existing'; readonly status: MessageStatus }
  /** the idempotency key names a message stored from another request */
  | { readonly kind: 'conflict' }
  /** OUTBOX_MAX_BYTES of message text are stored (`mine`: the owner's share of it, OUTBOX_MAX_BYTES_PER_CALLER) */
  | { readonly kind: 'full'; readonly bytes: number; readonly mine: boolean };

/** A message claimed for delivery: it is SENDING until an outcome is recorded (or it is released). */
export interface Claimed {
  readonly id: string;
  readonly caller: string;
  readonly owner: string;
  readonly lane: Lane;
  readonly envelope: Envelope;
  readonly raw: string;
  readonly attempts: number;
  readonly acceptedAt: number;
  readonly expiresAt: number;
  /** the traceparent stored at acceptance, if any */
  readonly trace?: string | undefined;
}

/** A change of state the supervisor decided, and what goes with it. */
export interface Change {
  readonly id: string;
  readonly event: Exclude<MessageEventType, 'CLAIM' | 'CANCEL'>;
  readonly at: number;
  /** DELIVERED, DEFER, FAIL: an attempt the relay took part in (the store counts it) */
  readonly attempted?: boolean;
  readonly response?: string;
  readonly errorCode?: string;
  /** DEFER for the relay's absence: its next dial (else the store's backoff says when) */
  readonly retryAt?: number;
  readonly connection?: string;
}

/** Why due messages wait while no connection can reach the relay. */
export interface RelayAway {
  /** the catalogue code the status shows (EUNAVAILABLE) */
  readonly errorCode: string;
  /** the last dial's error, e.g. "connect ECONNREFUSED 127.0.0.1:2525" */
  readonly response: string;
  /** when a connection dials next */
  readonly retryAt: number;
}

/** Whether the store can write now; `error` says why not. */
export interface StoreHealth {
  readonly up: boolean;
  readonly error?: MailroomError;
}

export type Cancellation =
  | { readonly kind: 'cancelled'; readonly status: MessageStatus }
  /** it is SENDING or final: its status as it is */
  | { readonly kind: 'refused'; readonly status: MessageStatus }
  | { readonly kind: 'unknown' };

export interface OutboxCounts {
  readonly states: Readonly<Record<MessageState, number>>;
  /** accepted_at of the oldest QUEUED message; undefined when none */
  readonly oldestQueuedAt: number | undefined;
  /** bytes of stored message text */
  readonly bytes: number;
}

export interface OutboxStore {
  /**
   * Opens (and after a crash recovers) the store: messages found SENDING go
   * back to QUEUED. Rejects only when the service must not start (a damaged
   * file: ECONFIG); a store that cannot be written now opens down
   * (onHealth) and comes up through probe().
   */
  open(now: number): Promise<void>;
  /** Stores new messages, all in one commit; one answer each, in order. */
  accept(messages: readonly NewMessage[], now: number): Promise<Acceptance[]>;
  /**
   * Claims up to `n` messages due by `now`: by lane, HIGH first, but BULK
   * owed its share (OutboxSettings.bulkShare); within a lane, owners take
   * turns, and an owner's oldest due goes first. `nextDue`: the earliest left.
   */
  claim(n: number, now: number): Promise<{ readonly claimed: Claimed[]; readonly nextDue: number | undefined }>;
  /**
   * Records changes, in one commit; kept until written, whatever the
   * store's health. A change the chart does not take is skipped (the record
   * moved on). Resolves with when what it deferred or released is due.
   */
  record(changes: readonly Change[]): Promise<number | undefined>;
  /** Cancels a QUEUED or DEFERRED message of `caller`. */
  cancel(id: string, caller: string, now: number): Promise<Cancellation>;
  /**
   * The relay is away: due QUEUED messages (at most `limit`) become DEFERRED
   * with `away`'s reason and its next dial; those already deferred for the
   * relay's absence only move their next attempt (no event: a watcher hears
   * of an outage once). The earliest due after.
   */
  deferDue(now: number, limit: number, away: RelayAway): Promise<number | undefined>;
  /** Fails what is past its expiry (EEXPIRED), at most `limit`; how many. */
  expire(now: number, limit: number): Promise<number>;
  /** Makes DEFERRED messages whose last failure was the relay's absence due now (the relay is back); the earliest due after. */
  hasten(now: number): Promise<number | undefined>;
  /** Forgets final records and events older than the retention. */
  purge(olderThan: number): Promise<void>;
  /** A message of `caller`, or undefined. */
  get(id: string, caller: string): Promise<MessageStatus | undefined>;
  /** The status events of `caller` after `cursor` (undefined: from now on, nothing), oldest first. */
  events(after: string, caller: string, limit: number): Promise<StatusEvent[]>;
  /** The cursor of `caller`'s latest event: a watcher that starts now resumes from it. */
  latest(caller: string): Promise<string>;
  counts(): Promise<OutboxCounts>;
  /** The key WatchMessages cursors are sealed with (cursor.ts): the store's own, so that cursors outlive restarts and are the same on every replica. */
  cursorKey(): Promise<Buffer>;
  /** Stores status records of SYNC messages the relay took (BOUNCE_DOMAIN set), in one commit, with no event (their callers heard SENT). */
  remember(sent: readonly SentMessage[]): Promise<void>;
  /**
   * Applies a delivery report: a hard bounce moves a sent message to
   * BOUNCED, a complaint to COMPLAINED (as the chart allows), a soft bounce
   * is recorded only; the suppressions it adds go in the same commit.
   */
  report(report: Report): Promise<ReportOutcome>;
  /** Adds a suppression; one already there stays as it is (and is the answer). */
  suppress(entry: SuppressionEntry): Promise<SuppressionEntry>;
  /** Removes a suppression; what it was, or undefined. */
  unsuppress(digest: string): Promise<SuppressionEntry | undefined>;
  suppression(digest: string): Promise<SuppressionEntry | undefined>;
  /** Suppressions in digest order after `after` ('' from the first), at most `limit`. */
  suppressions(after: string, limit: number): Promise<SuppressionEntry[]>;
  /** Hears every suppression added or removed, on any replica: `added` false for a removal. */
  onSuppression(listener: (change: { readonly digest: string; readonly added: boolean }) => void): () => void;
  /** Hears of every commit that added status events (a watcher then reads them). */
  onEvents(listener: (events: readonly StatusEvent[]) => void): () => void;
  /** Hears of new messages as they are handed to accept, with when the earliest falls due: a claim made in the same turn joins their commit. */
  onSubmitted(listener: (dueAt: number) => void): () => void;
  /** Hears every change of health, and the health now. */
  onHealth(listener: (health: StoreHealth) => void): () => void;
  readonly health: StoreHealth;
  /** Tries to get back up (a new worker, a reconnect, what it could not write); resolves once up, rejects with why not. */
  probe(): Promise<void>;
  close(): Promise<void>;
}
