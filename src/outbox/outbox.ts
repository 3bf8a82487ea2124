// The outbox as callers use it (MailService in QUEUED mode, GetMessage,
// CancelMessage, WatchMessages): methods, not actor events. Storing,
// cancelling and reading go to the store directly: it is the one writer of
// a message's state, and it serialises its own writes (one worker, one
// transaction a batch). The supervisor hears of new messages from the
// store, and only to deliver them.
import { createHash } from 'node:crypto';
import { MailroomError } from '../errors.js';
import type { Composer, OutgoingMessage } from '../mail/compose.js';
import { fingerprint, type Draft } from '../mail/draft.js';
import { NORMAL_LANE, type Lane } from '../mail/lane.js';
import { CursorSeal } from './cursor.js';
import { traceAccepted } from '../lib/tracing.js';
import type { OutboxSettings } from './settings.js';
import type { Acceptance, Cancellation, MessageStatus, NewMessage, OutboxStore, ReturnPath, StatusEvent } from './store.js';

export interface QueueOptions {
  /** the authenticated caller ('' when none): only it sees the message */
  readonly caller: string;
  /** whose turn it takes and whose share it spends (default: the caller) */
  readonly owner?: string;
  /** default: NORMAL */
  readonly lane?: Lane;
  readonly idempotencyKey?: string;
  /** epoch ms: not before then */
  readonly sendAt?: number;
}

/** Messages queued together: add each, then close to hand them over. */
export interface QueueBatch {
  add(draft: Draft, options: QueueOptions): Promise<MessageStatus>;
  close(): void;
}

interface Entry {
  readonly draft: Draft;
  readonly options: QueueOptions;
  readonly resolve: (status: MessageStatus) => void;
  readonly reject: (err: unknown) => void;
}

/** events a watcher reads from the store at a time */
const WATCH_PAGE = 200;

export class Outbox {
  constructor(
    private readonly store: OutboxStore,
    private readonly settings: Pick<OutboxSettings, 'maxDelayMs' | 'maxAgeMs'>,
    private readonly composer: Composer,
    private readonly now: () => number = Date.now,
    /** what the store keeps to match a message's delivery reports (bounce/return-path.ts) */
    private readonly paths?: { pathOf(message: OutgoingMessage): ReturnPath | undefined },
    /** a SYNC message's record still to be written (bounce/sync-mail.ts): what a read of it waits for */
    private readonly unwritten?: (id: string) => Promise<void> | undefined,
  ) {}

  /** Stores the message durably; resolves with its status once it is on disk. */
  queue(draft: Draft, options: QueueOptions): Promise<MessageStatus> {
    const batch = this.batch();
    const status = batch.add(draft, options);
    batch.close();
    return status;
  }

  /**
   * Messages stored together (SendMailBatch): composed (and signed) first,
   * then handed to the store in one go, so that they share one commit.
   * Each still succeeds or fails on its own.
   */
  batch(): QueueBatch {
    const entries: Entry[] = [];
    return {
      add: (draft, options) => new Promise<MessageStatus>((resolve, reject) => entries.push({ draft, options, resolve, reject })),
      close: () => void this.submit(entries),
    };
  }

  private async submit(entries: readonly Entry[]): Promise<void> {
    const now = this.now();
    const ready = await Promise.all(
      entries.map(async (entry) => {
        try {
          return { entry, message: await this.prepare(entry.draft, entry.options, now) };
        } catch (err) {
          entry.reject(err);
          return undefined;
        }
      }),
    );
    const taken = ready.filter((item) => item !== undefined);
    if (taken.length === 0) return;
    let answers: Acceptance[];
    try {
      answers = await this.store.accept(
        taken.map((item) => item.message),
        now,
      );
    } catch (err) {
      for (const { entry } of taken) entry.reject(err);
      return;
    }
    taken.forEach(({ entry }, i) => answer(entry, answers[i]));
  }

  /** The message as the store takes it; throws what is wrong with its time, or its size. */
  private async prepare(draft: Draft, options: QueueOptions, now: number): Promise<NewMessage> {
    const sendAt = options.sendAt ?? now;
    if (sendAt > now + this.settings.maxDelayMs) {
      throw new MailroomError('EINVALID', `send_at: at most ${Math.round(this.settings.maxDelayMs / 1000)} s ahead (OUTBOX_MAX_DELAY_SECONDS)`);
    }
    const message = await this.composer.compose(draft);
    const key = options.idempotencyKey;
    const returnPath = this.paths?.pathOf(message);
    const trace = traceAccepted();
    return {
      id: message.messageId,
      caller: options.caller,
      owner: options.owner ?? options.caller,
      lane: options.lane ?? NORMAL_LANE,
      envelope: message.envelope,
      raw: message.raw,
      acceptedAt: now,
      dueAt: Math.max(now, sendAt),
      expiresAt: Math.max(now, sendAt) + this.settings.maxAgeMs,
      ...(returnPath !== undefined ? { returnPath } : {}),
      ...(trace !== undefined ? { trace } : {}),
      ...(key !== undefined && key !== '' ? { idempotency: { key: scoped(options.caller, key), fingerprint: fingerprint(draft, options.sendAt ?? null) } } : {}),
    };
  }

  async get(id: string, caller: string): Promise<MessageStatus | undefined> {
    await this.unwritten?.(id);
    return this.store.get(id, caller);
  }

  cancel(id: string, caller: string): Promise<Cancellation> {
    return this.store.cancel(id, caller, this.now());
  }

  /**
   * Streams `caller`'s status events after `after` (empty: from now) to
   * `write`, oldest first, none twice, none missed, until `stop` is called.
   * It reads the store page by page, as fast as `write` takes them (false:
   * wait for `drained`), and waits for a commit when it has caught up: a
   * slow watcher costs a cursor, not a buffer.
   */
  /** `live` is called once the starting point is fixed: from then on no event of the caller's is missed. */
  watch(caller: string, after: string, write: (event: StatusEvent) => boolean, drained: (go: () => void) => void, live: () => void): { stop(): void; ended: Promise<void> } {
    let stopped = false;
    let wake: (() => void) | undefined;
    /** a commit came since the last read began: read again before waiting */
    let committed = false;
    const unsubscribe = this.store.onEvents(() => {
      committed = true;
      wake?.();
    });
    const ended = (async () => {
      const seal = new CursorSeal(await this.store.cursorKey());
      let cursor = after === '' ? await this.store.latest(caller) : seal.open(caller, after);
      if (cursor === undefined) throw new MailroomError('EINVALID', 'after: not a cursor WatchMessages gave this caller (empty: from now)');
      live();
      while (!stopped) {
        committed = false;
        const page = await this.store.events(cursor, caller, WATCH_PAGE);
        for (const event of page) {
          if (stopped) return;
          cursor = event.cursor;
          if (!write({ ...event, cursor: seal.seal(caller, event.cursor) })) await new Promise<void>((resolve) => drained(resolve));
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

/** Answers the caller of one message with what the store said of it. */
function answer(entry: Entry, accepted: Acceptance | undefined): void {
  switch (accepted?.kind) {
    case 'accepted':
    case 'existing':
      return entry.resolve(accepted.status);
    case 'conflict':
      return entry.reject(new MailroomError('EIDEMPOTENCY', 'idempotency_key was used before with a different request'));
    case 'full': {
      const what = accepted.mine ? "this caller's share of the outbox (OUTBOX_MAX_BYTES_PER_CALLER)" : 'the outbox (OUTBOX_MAX_BYTES)';
      return entry.reject(new MailroomError('EQUEUEFULL', `${what} is full: ${Math.ceil(accepted.bytes / 1_048_576)} MiB of messages waiting`, { retryAfterSeconds: 30 }));
    }
    case undefined:
      return entry.reject(new MailroomError('EINTERNAL', 'the outbox store gave no answer for a message'));
  }
}

/** An idempotency key as stored: the caller's own, and not readable in the file. */
function scoped(caller: string, key: string): string {
  return createHash('sha256').update(caller).update('\0').update(key).digest('base64url');
}
