// The outbox as callers use it (MailService in QUEUED mode, GetMessage,
// CancelMessage, WatchMessages): methods, not actor events. Storing and
// cancelling go through the supervisor, the store's one writer (its
// mailbox, by `requests$`); reading goes to the store directly.
import { createHash } from 'node:crypto';
import type { Subject } from 'rxjs';
import { MailroomError } from '../errors.js';
import { withResolvers } from '../lib/resolvers.js';
import type { Composer } from '../mail/compose.js';
import { fingerprint, type Draft } from '../mail/draft.js';
import type { OutboxRequest, OutboxSettings } from './requests.js';
import type { Acceptance, Cancellation, MessageStatus, OutboxStore, StatusEvent } from './store.js';

export interface QueueOptions {
  /** the authenticated caller ('' when none): only it sees the message */
  readonly caller: string;
  readonly idempotencyKey?: string;
  /** epoch ms: not before then */
  readonly sendAt?: number;
}

/** events a watcher reads from the store at a time */
const WATCH_PAGE = 200;

export class Outbox {
  constructor(
    private readonly store: OutboxStore,
    private readonly requests$: Subject<OutboxRequest>,
    private readonly settings: OutboxSettings,
    private readonly composer: Composer,
    private readonly now: () => number = Date.now,
  ) {}

  /** Stores the message durably; resolves with its status once it is on disk. */
  async queue(draft: Draft, options: QueueOptions): Promise<MessageStatus> {
    const now = this.now();
    const sendAt = options.sendAt ?? now;
    if (sendAt > now + this.settings.maxDelayMs) {
      throw new MailroomError('EINVALID', `send_at: at most ${Math.round(this.settings.maxDelayMs / 1000)} s ahead (OUTBOX_MAX_DELAY_SECONDS)`);
    }
    const message = await this.composer.compose(draft);
    const key = options.idempotencyKey;
    const { reply, answer } = withResolvers<Acceptance>();
    this.requests$.next({
      type: 'accept',
      reply,
      message: {
        id: message.messageId,
        caller: options.caller,
        envelope: message.envelope,
        raw: message.raw,
        acceptedAt: now,
        dueAt: Math.max(now, sendAt),
        expiresAt: Math.max(now, sendAt) + this.settings.maxAgeMs,
        ...(key !== undefined && key !== '' ? { idempotency: { key: scoped(options.caller, key), fingerprint: fingerprint(draft, options.sendAt ?? null) } } : {}),
      },
    });
    const accepted = await answer;
    switch (accepted.kind) {
      case 'accepted':
      case 'existing':
        return accepted.status;
      case 'conflict':
        throw new MailroomError('EIDEMPOTENCY', 'idempotency_key was used before with a different request');
      case 'full':
        throw new MailroomError('EQUEUEFULL', `the outbox holds OUTBOX_MAX_BYTES of messages (${Math.ceil(accepted.bytes / 1_048_576)} MiB)`, { retryAfterSeconds: 30 });
    }
  }

  get(id: string, caller: string): Promise<MessageStatus | undefined> {
    return this.store.get(id, caller);
  }

  cancel(id: string, caller: string): Promise<Cancellation> {
    const { reply, answer } = withResolvers<Cancellation>();
    this.requests$.next({ type: 'cancel', id, caller, reply });
    return answer;
  }

  /**
   * Streams `caller`'s status events after `after` (empty: from now) to
   * `write`, oldest first, none twice, none missed, until `stop` is called.
   * It reads the store page by page, as fast as `write` takes them (false:
   * wait for `drained`), and waits for a commit when it has caught up: a
   * slow watcher costs a cursor, not a buffer.
   */
  watch(caller: string, after: string, write: (event: StatusEvent) => boolean, drained: (go: () => void) => void): { stop(): void; ended: Promise<void> } {
    let stopped = false;
    let wake: (() => void) | undefined;
    /** a commit came since the last read began: read again before waiting */
    let committed = false;
    const unsubscribe = this.store.onEvents(() => {
      committed = true;
      wake?.();
    });
    const ended = (async () => {
      let cursor = after === '' ? await this.store.latest(caller) : after;
      while (!stopped) {
        committed = false;
        const page = await this.store.events(cursor, caller, WATCH_PAGE);
        for (const event of page) {
          if (stopped) return;
          cursor = event.cursor;
          if (!write(event)) await new Promise<void>((resolve) => drained(resolve));
        }
        if (page.length === WATCH_PAGE || committed || stopped) continue;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    })().finally(unsubscribe);
    return {
      stop: () => {
        stopped = true;
        wake?.();
      },
      ended,
    };
  }
}

/** An idempotency key as stored: the caller's own, and not readable in the file. */
function scoped(caller: string, key: string): string {
  return createHash('sha256').update(caller).update('\0').update(key).digest('base64url');
}
