// The outbox's operations on its SQLite tables (sqlite-schema.ts), run in
// the worker thread (sqlite-worker.ts), each batch in one transaction. Every
// change of a record's state goes through move(): the message machine
// (lifecycle.ts) judges it, policy.ts says when a deferred message is due
// again, and the change is written with its status event. Final messages
// lose their text at once.
import type Database from 'better-sqlite3';
import { maskAddresses } from '../lib/mask.js';
import { isLane, NORMAL_LANE } from '../mail/lane.js';
import { LaneTurns } from './sqlite-claims.js';
import { advance, ENDED, isFinal, MESSAGE_STATES, type MessageState } from './lifecycle.js';
import { judgeReport } from './reports.js';
import { ABSENCE, isAbsence, nextAttemptAt, statusOf } from './policy.js';
import type { OutboxSettings } from './settings.js';
import type { Acceptance, BounceRecord, Cancellation, Change, Claimed, MessageStatus, NewMessage, OutboxCounts, RelayAway, Report, ReportOutcome, SentMessage, StatusEvent } from './store.js';
import { SuppressionTables } from './sqlite-suppressions.js';

interface Row {
  id: string;
  caller: string;
  state: MessageState;
  attempts: number;
  last_response: string;
  error_code: string;
  accepted_at: number;
  updated_at: number;
  due_at: number;
  expires_at: number;
  fingerprint: string | null;
  lane: number;
  owner: string;
  bounce_key: string | null;
  /** JSON: the envelope recipients' digests */
  recipients: string | null;
  /** JSON: BounceRecord[] */
  bounces: string | null;
  /** the traceparent stored at acceptance */
  trace: string | null;
}

interface Move {
  attempted?: boolean;
  response?: string;
  errorCode?: string;
  dueAt?: number;
  connection?: string;
}

const STATE_LIST = "('queued', 'deferred')";
const ENDED_LIST = `(${ENDED.map((s) => `'${s}'`).join(', ')})`;

function prepare(db: Database.Database) {
  return {
    row: db.prepare<[string], Row>('SELECT * FROM messages WHERE id = ?'),
    rowOf: db.prepare<[string, string], Row>('SELECT * FROM messages WHERE id = ? AND caller = ?'),
    byIdem: db.prepare<[string], Row>('SELECT * FROM messages WHERE idem = ?'),
    insert: db.prepare(
      'INSERT INTO messages (id, caller, state, accepted_at, updated_at, due_at, expires_at, idem, fingerprint, lane, owner, bounce_key, recipients, attempts, last_response, trace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    byBounceKey: db.prepare<[string], Row>('SELECT * FROM messages WHERE bounce_key = ?'),
    insertSent: db.prepare(
      "INSERT OR IGNORE INTO messages (id, caller, state, accepted_at, updated_at, due_at, expires_at, lane, bounce_key, recipients, attempts, last_response, trace) VALUES (?, ?, 'sent', ?, ?, 0, ?, 2, ?, ?, ?, ?, ?)",
    ),
    setBounces: db.prepare('UPDATE messages SET bounces = ?, updated_at = ? WHERE id = ?'),
    insertText: db.prepare('INSERT INTO texts (id, envelope, raw, bytes) VALUES (?, ?, ?, ?)'),
    text: db.prepare<[string], { envelope: string; raw: string; bytes: number }>('SELECT envelope, raw, bytes FROM texts WHERE id = ?'),
    textBytes: db.prepare<[string], { bytes: number }>('SELECT bytes FROM texts WHERE id = ?'),
    deleteText: db.prepare('DELETE FROM texts WHERE id = ?'),
    update: db.prepare('UPDATE messages SET state = ?, attempts = ?, last_response = ?, error_code = ?, updated_at = ?, due_at = ? WHERE id = ?'),
    setDue: db.prepare('UPDATE messages SET due_at = ? WHERE id = ?'),
    due: db.prepare<[number, number], Row>(`SELECT * FROM messages WHERE state IN ${STATE_LIST} AND due_at <= ? ORDER BY due_at LIMIT ?`),
    // The claim's turns (messages_turns): the next owner with anything waiting in a lane is one index seek, and so are its oldest due.
    firstOwner: db.prepare<[number], { owner: string }>(`SELECT owner FROM messages WHERE state IN ${STATE_LIST} AND lane = ? ORDER BY owner LIMIT 1`),
    ownerAfter: db.prepare<[number, string], { owner: string }>(`SELECT owner FROM messages WHERE state IN ${STATE_LIST} AND lane = ? AND owner > ? ORDER BY owner LIMIT 1`),
    dueOf: db.prepare<[number, string, number, number], Row>(`SELECT * FROM messages WHERE state IN ${STATE_LIST} AND lane = ? AND owner = ? AND due_at <= ? ORDER BY due_at LIMIT ?`),
    ownerBytes: db.prepare<[], { owner: string; n: number }>('SELECT m.owner AS owner, SUM(t.bytes) AS n FROM texts t JOIN messages m ON m.id = t.id GROUP BY m.owner'),
    nextDue: db.prepare<[], { at: number | null }>(`SELECT MIN(due_at) AS at FROM messages WHERE state IN ${STATE_LIST}`),
    expired: db.prepare<[number, number], Row>(`SELECT * FROM messages WHERE state IN ${STATE_LIST} AND expires_at <= ? LIMIT ?`),
    sending: db.prepare<[], Row>("SELECT * FROM messages WHERE state = 'sending'"),
    hasten: db.prepare(`UPDATE messages SET due_at = ? WHERE state = 'deferred' AND due_at > ? AND error_code IN (${ABSENCE.map(() => '?').join(', ')})`),
    forgetEnded: db.prepare(`DELETE FROM messages WHERE state IN ${ENDED_LIST} AND updated_at < ?`),
    forgetEvents: db.prepare('DELETE FROM events WHERE updated_at < ?'),
    event: db.prepare(
      'INSERT INTO events (id, caller, state, attempts, last_response, error_code, accepted_at, updated_at, next_attempt_at, connection, bounces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    eventsAfter: db.prepare<[string, number, number], Row & { seq: number; next_attempt_at: number; connection: string | null }>(
      'SELECT * FROM events WHERE caller = ? AND seq > ? ORDER BY seq LIMIT ?',
    ),
    latest: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM events'),
    counts: db.prepare<[], { state: MessageState; n: number }>('SELECT state, COUNT(*) AS n FROM messages GROUP BY state'),
    oldestQueued: db.prepare<[], { at: number | null }>("SELECT MIN(accepted_at) AS at FROM messages WHERE state = 'queued'"),
    bytes: db.prepare<[], { n: number | null }>('SELECT SUM(bytes) AS n FROM texts'),
    probe: db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('probe', ?)"),
    meta: db.prepare<[string], { v: string }>('SELECT v FROM meta WHERE k = ?'),
    setMeta: db.prepare('INSERT OR IGNORE INTO meta (k, v) VALUES (?, ?)'),
  };
}


export class OutboxTables {
  private readonly sql: ReturnType<typeof prepare>;
  readonly suppressions: SuppressionTables;
  private bytes: number;
  /** stored text by owner (OUTBOX_MAX_BYTES_PER_CALLER) */
  private readonly ownerBytes = new Map<string, number>();
  private readonly turns: LaneTurns<Row>;
  /** status events written by the batch under way, reported with its reply */
  private written: StatusEvent[] = [];

  constructor(
    private readonly db: Database.Database,
    private readonly settings: Pick<OutboxSettings, 'retryBaseMs' | 'retryMaxMs' | 'maxBytes' | 'maxBytesPerCaller' | 'bulkShare'>,
    /** told when text was deleted: its old copies are still in the WAL */
    private readonly onTextDeleted: () => void,
  ) {
    this.sql = prepare(db);
    this.suppressions = new SuppressionTables(db);
    const sql = this.sql;
    this.turns = new LaneTurns<Row>(
      {
        firstOwner: (lane) => sql.firstOwner.get(lane)?.owner,
        ownerAfter: (lane, owner) => sql.ownerAfter.get(lane, owner)?.owner,
        dueOf: (lane, owner, now, limit) => sql.dueOf.all(lane, owner, now, limit),
      },
      settings.bulkShare,
      (row, now) => this.take(row, now),
    );
    this.bytes = 0;
    this.countBytes();
  }

  /** The byte counts follow what is on disk. */
  private countBytes(): void {
    this.ownerBytes.clear();
    this.bytes = 0;
    for (const { owner, n } of this.sql.ownerBytes.all()) {
      this.ownerBytes.set(owner, n);
      this.bytes += n;
    }
  }

  /** Starts a batch: the status events it writes are collected from here. */
  begin(): void {
    this.written = [];
  }

  /** The status events the batch wrote. */
  events(): StatusEvent[] {
    return this.written;
  }

  /** A batch rolled back: the byte count follows what is on disk. */
  rolledBack(): void {
    this.countBytes();
    this.written = [];
  }

  /** Writes a record's new state, its event, and, once it is final, deletes its text. */
  private move(row: Row, state: MessageState, at: number, fields: Move = {}): Row {
    const next: Row = {
      ...row,
      state,
      attempts: row.attempts + (fields.attempted === true ? 1 : 0),
      last_response: fields.response !== undefined ? maskAddresses(fields.response).slice(0, 512) : row.last_response,
      error_code: fields.errorCode ?? row.error_code,
      updated_at: at,
      due_at: isFinal(state) || state === 'sending' ? 0 : (fields.dueAt ?? row.due_at),
    };
    this.sql.update.run(next.state, next.attempts, next.last_response, next.error_code, next.updated_at, next.due_at, next.id);
    if (isFinal(state)) this.dropText(row.id, row.owner);
    this.note(next, fields.connection);
    return next;
  }

  private note(row: Row, connection: string | undefined): void {
    const s = statusOf(row);
    const info = this.sql.event.run(row.id, row.caller, s.state, s.attempts, s.lastResponse, s.errorCode, s.acceptedAt, s.updatedAt, s.nextAttemptAt, connection ?? null, row.bounces);
    this.written.push({ cursor: String(info.lastInsertRowid), status: s, ...(connection !== undefined ? { connection } : {}) });
  }

  private dropText(id: string, owner: string): void {
    const size = this.sql.textBytes.get(id)?.bytes;
    if (size === undefined) return;
    this.sql.deleteText.run(id);
    this.addBytes(owner, -size);
    this.onTextDeleted();
  }

  private addBytes(owner: string, by: number): void {
    this.bytes += by;
    const n = (this.ownerBytes.get(owner) ?? 0) + by;
    if (n <= 0) this.ownerBytes.delete(owner);
    else this.ownerBytes.set(owner, n);
  }

  accept(messages: readonly NewMessage[]): Acceptance[] {
    return messages.map((m): Acceptance => {
      if (m.idempotency !== undefined) {
        const before = this.sql.byIdem.get(m.idempotency.key);
        if (before !== undefined) return before.fingerprint === m.idempotency.fingerprint ? { kind: 'existing', status: statusOf(before) } : { kind: 'conflict' };
      }
      const envelope = JSON.stringify(m.envelope);
      const size = Buffer.byteLength(m.raw) + Buffer.byteLength(envelope);
      if (this.bytes + size > this.settings.maxBytes) return { kind: 'full', bytes: this.bytes, mine: false };
      const mine = this.ownerBytes.get(m.owner) ?? 0;
      if (mine + size > this.settings.maxBytesPerCaller) return { kind: 'full', bytes: mine, mine: true };
      const path = m.returnPath;
      this.sql.insert.run(m.id, m.caller, 'queued', m.acceptedAt, m.acceptedAt, m.dueAt, m.expiresAt, m.idempotency?.key ?? null, m.idempotency?.fingerprint ?? null, m.lane, m.owner, path?.key ?? null, path === undefined ? null : JSON.stringify(path.recipients), 0, '', m.trace ?? null);
      this.sql.insertText.run(m.id, envelope, m.raw, size);
      this.addBytes(m.owner, size);
      const row = this.sql.row.get(m.id) as Row;
      this.note(row, undefined);
      return { kind: 'accepted', status: statusOf(row) };
    });
  }

  /** SYNC messages' records: no event (the caller heard SENT in its reply). */
  remember(sent: readonly SentMessage[]): void {
    for (const m of sent) {
      this.sql.insertSent.run(m.id, m.caller, m.acceptedAt, m.at, m.at, m.returnPath.key, JSON.stringify(m.returnPath.recipients), m.attempts, maskAddresses(m.response).slice(0, 512), m.trace ?? null);
    }
  }

  /** A delivery report on the message its key names: one event, whatever it moved, and its suppressions. */
  report(r: Report): ReportOutcome {
    const row = this.sql.byBounceKey.get(r.key);
    if (row === undefined) return { kind: 'unknown' };
    const judged = judgeReport(row.state, JSON.parse(row.recipients ?? '[]') as string[], JSON.parse(row.bounces ?? '[]') as BounceRecord[], r);
    if (judged === undefined) return { kind: 'unmatched' };
    const bounces = JSON.stringify(judged.bounces);
    this.sql.setBounces.run(bounces, r.at, row.id);
    const state = judged.event === undefined ? undefined : advance(row.state, judged.event);
    const after = state === undefined ? this.noteOnly({ ...row, bounces }, r.at) : this.move({ ...row, bounces }, state, r.at);
    const reason = judged.event === 'COMPLAIN' ? 'complaint' : 'bounce';
    for (const s of judged.suppress) this.suppressions.add({ digest: s.digest, masked: s.masked, reason, since: r.at, messageId: row.id });
    return { kind: 'applied', status: statusOf(after), suppressed: judged.suppress.map((s) => s.digest), ...(row.trace !== null ? { trace: row.trace } : {}) };
  }

  /** A record that changed without a move (a soft bounce, a second report): its event. */
  private noteOnly(row: Row, at: number): Row {
    const next = { ...row, updated_at: at };
    this.note(next, undefined);
    return next;
  }

  nextDue(): number | undefined {
    return this.sql.nextDue.get()?.at ?? undefined;
  }

  /** Due messages by lane and owners' turns (sqlite-claims.ts), SENDING now. */
  claim(n: number, now: number): { claimed: Claimed[]; nextDue: number | undefined } {
    return { claimed: this.turns.claim(n, now), nextDue: this.nextDue() };
  }

  /** A due message, SENDING now, as the supervisor takes it; undefined when its record moved on or its text is gone. */
  private take(row: Row, now: number): Claimed | undefined {
    const state = advance(row.state, 'CLAIM');
    const text = this.sql.text.get(row.id);
    if (state === undefined || text === undefined) return undefined;
    this.move(row, state, now);
    const lane = isLane(row.lane) ? row.lane : NORMAL_LANE;
    return { id: row.id, caller: row.caller, owner: row.owner, lane, envelope: JSON.parse(text.envelope) as Claimed['envelope'], raw: text.raw, attempts: row.attempts, acceptedAt: row.accepted_at, expiresAt: row.expires_at, ...(row.trace !== null ? { trace: row.trace } : {}) };
  }

  /** Writes the outcomes; when something it deferred or released is due (the earliest of all), else undefined. */
  record(changes: readonly Change[]): number | undefined {
    let due: number | undefined;
    for (const c of changes) {
      const row = this.sql.row.get(c.id);
      const state = row === undefined ? undefined : advance(row.state, c.event);
      if (row === undefined || state === undefined) continue;
      const attempts = row.attempts + (c.attempted === true ? 1 : 0);
      const dueAt = c.event === 'DEFER' ? nextAttemptAt({ at: c.at, attempts, expiresAt: row.expires_at, retryAt: c.retryAt }, this.settings) : c.event === 'RELEASE' ? c.at : undefined;
      this.move(row, state, c.at, {
        attempted: c.attempted === true,
        ...(c.response !== undefined ? { response: c.response } : {}),
        ...(c.errorCode !== undefined ? { errorCode: c.errorCode } : {}),
        ...(dueAt !== undefined ? { dueAt } : {}),
        ...(c.connection !== undefined ? { connection: c.connection } : {}),
      });
      if (dueAt !== undefined) due = this.nextDue();
    }
    return due;
  }

  cancel(id: string, caller: string, now: number): Cancellation {
    const row = this.sql.rowOf.get(id, caller);
    if (row === undefined) return { kind: 'unknown' };
    const state = advance(row.state, 'CANCEL');
    if (state === undefined) return { kind: 'refused', status: statusOf(row) };
    return { kind: 'cancelled', status: statusOf(this.move(row, state, now)) };
  }

  deferDue(now: number, limit: number, away: RelayAway): number | undefined {
    for (const row of this.sql.due.all(now, limit)) {
      if (row.state === 'deferred' && isAbsence(row.error_code)) {
        // Told once: while the outage lasts only its next attempt moves.
        this.sql.setDue.run(Math.max(away.retryAt, now + 1), row.id);
        continue;
      }
      const state = advance(row.state, 'DEFER');
      if (state !== undefined) this.move(row, state, now, { response: away.response, errorCode: away.errorCode, dueAt: Math.min(Math.max(away.retryAt, now + 1), row.expires_at) });
    }
    return this.nextDue();
  }

  expire(now: number, limit: number): number {
    const rows = this.sql.expired.all(now, limit);
    for (const row of rows) {
      const state = advance(row.state, 'EXPIRE');
      if (state !== undefined) this.move(row, state, now, { errorCode: 'EEXPIRED' });
    }
    return rows.length;
  }

  hasten(now: number): number | undefined {
    this.sql.hasten.run(now, now, ...ABSENCE);
    return this.nextDue();
  }

  purge(olderThan: number): void {
    this.sql.forgetEnded.run(olderThan);
    this.sql.forgetEvents.run(olderThan);
  }

  get(id: string, caller: string): MessageStatus | undefined {
    const row = this.sql.rowOf.get(id, caller);
    return row === undefined ? undefined : statusOf(row);
  }

  eventsAfter(after: number, caller: string, limit: number): StatusEvent[] {
    return this.sql.eventsAfter.all(caller, after, limit).map((e) => ({
      cursor: String(e.seq),
      status: statusOf({ ...e, due_at: e.next_attempt_at }),
      ...(e.connection !== null ? { connection: e.connection } : {}),
    }));
  }

  latest(): number {
    return this.sql.latest.get()?.seq ?? 0;
  }

  counts(): OutboxCounts {
    const states = Object.fromEntries(MESSAGE_STATES.map((s) => [s, 0])) as Record<MessageState, number>;
    for (const { state, n } of this.sql.counts.all()) states[state] = n;
    return { states, oldestQueuedAt: this.sql.oldestQueued.get()?.at ?? undefined, bytes: this.bytes };
  }

  /** The store's cursor key (hex), made once. */
  cursorKey(fresh: string): string {
    this.sql.setMeta.run('cursor_key', fresh);
    return (this.sql.meta.get('cursor_key') as { v: string }).v;
  }

  /** A write as small as there is: it succeeds only where the disk takes a page. */
  probe(now: number): void {
    this.sql.probe.run(now);
  }

  /** Messages a crash left SENDING go back to QUEUED, due now: their connection is gone, whatever it had sent. */
  recover(now: number): number {
    const rows = this.sql.sending.all();
    this.db.transaction(() => {
      for (const row of rows) {
        const state = advance(row.state, 'RELEASE');
        if (state !== undefined) this.move(row, state, now, { dueAt: now });
      }
    })();
    this.written = [];
    return rows.length;
  }
}
