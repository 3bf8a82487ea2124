// The SQLite outbox, in a thread of its own: a commit's fsync (and the
// writes before it) never holds the event loop that answers calls. Each
// batch from the main thread is one transaction: the writes of one turn of
// its loop share one fsync (WAL, synchronous=FULL), and when the reply
// goes back the batch is on disk. secure_delete zeroes what a DELETE frees,
// and a TRUNCATE checkpoint soon after deletes the WAL's older copies of
// it: a sent message's text is gone from the files, not only the table.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { maskAddresses } from '../lib/mask.js';
import { advance, isFinal, type MessageState } from './lifecycle.js';
import { SCHEMA, SCHEMA_VERSION } from './sqlite-schema.js';
import { READS, type Batch, type Op, type WorkerMessage, type WorkerStart } from './sqlite-protocol.js';
import type { Acceptance, Cancellation, Change, Claimed, MessageStatus, NewMessage, OutboxCounts, StatusEvent } from './store.js';

const start = workerData as WorkerStart;
const port = parentPort;
if (port === null) throw new Error('the outbox worker runs in a worker thread');

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
}

/** Losses that mean the relay was away, not that it refused this message: when it is back, these are due at once. */
const ABSENCE = ['ECONNECTION', 'ETIMEDOUT', 'ETLS', 'EAUTH', 'EUNAVAILABLE', 'ESTALE', 'ESHUTDOWN'];

const send = (message: WorkerMessage): void => port.postMessage(message);

let db: Database.Database;
try {
  db = new Database(start.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('secure_delete = ON');
  db.pragma('busy_timeout = 5000');
  const check = db.pragma('quick_check', { simple: true });
  if (check !== 'ok') throw new Error(`the database is damaged: ${String(check)}`);
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) throw new Error(`written by a newer mailroom (schema ${version}, this one knows ${SCHEMA_VERSION})`);
  db.exec(SCHEMA);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
} catch (err) {
  send({ kind: 'fatal', message: (err as Error).message });
  process.exit(1);
}

const sql = {
  row: db.prepare<[string], Row>('SELECT * FROM messages WHERE id = ?'),
  rowOf: db.prepare<[string, string], Row>('SELECT * FROM messages WHERE id = ? AND caller = ?'),
  byIdem: db.prepare<[string], Row>('SELECT * FROM messages WHERE idem = ?'),
  insert: db.prepare(
    'INSERT INTO messages (id, caller, state, accepted_at, updated_at, due_at, expires_at, idem, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ),
  insertText: db.prepare('INSERT INTO texts (id, envelope, raw, bytes) VALUES (?, ?, ?, ?)'),
  text: db.prepare<[string], { envelope: string; raw: string; bytes: number }>('SELECT envelope, raw, bytes FROM texts WHERE id = ?'),
  textBytes: db.prepare<[string], { bytes: number }>('SELECT bytes FROM texts WHERE id = ?'),
  deleteText: db.prepare('DELETE FROM texts WHERE id = ?'),
  update: db.prepare('UPDATE messages SET state = ?, attempts = ?, last_response = ?, error_code = ?, updated_at = ?, due_at = ? WHERE id = ?'),
  due: db.prepare<[number, number], Row>("SELECT * FROM messages WHERE state IN ('queued', 'deferred') AND due_at <= ? ORDER BY due_at LIMIT ?"),
  nextDue: db.prepare<[], { at: number | null }>("SELECT MIN(due_at) AS at FROM messages WHERE state IN ('queued', 'deferred')"),
  expired: db.prepare<[number, number], Row>("SELECT * FROM messages WHERE state IN ('queued', 'deferred') AND expires_at <= ? LIMIT ?"),
  sending: db.prepare<[], Row>("SELECT * FROM messages WHERE state = 'sending'"),
  hasten: db.prepare(`UPDATE messages SET due_at = ? WHERE state = 'deferred' AND due_at > ? AND error_code IN (${ABSENCE.map(() => '?').join(', ')})`),
  forgetEnded: db.prepare("DELETE FROM messages WHERE state IN ('sent', 'failed', 'cancelled') AND updated_at < ?"),
  forgetEvents: db.prepare('DELETE FROM events WHERE updated_at < ?'),
  event: db.prepare(
    'INSERT INTO events (id, caller, state, attempts, last_response, error_code, accepted_at, updated_at, next_attempt_at, connection) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  ),
  eventsAfter: db.prepare<[string, number, number], Row & { seq: number; next_attempt_at: number; connection: string | null }>(
    'SELECT * FROM events WHERE caller = ? AND seq > ? ORDER BY seq LIMIT ?',
  ),
  latest: db.prepare<[], { seq: number | null }>('SELECT MAX(seq) AS seq FROM events'),
  counts: db.prepare<[], { state: MessageState; n: number }>('SELECT state, COUNT(*) AS n FROM messages GROUP BY state'),
  oldestQueued: db.prepare<[], { at: number | null }>("SELECT MIN(accepted_at) AS at FROM messages WHERE state = 'queued'"),
  bytes: db.prepare<[], { n: number | null }>('SELECT SUM(bytes) AS n FROM texts'),
};

let bytes = sql.bytes.get()?.n ?? 0;
/** status events written by the batch under way, reported with its reply */
let written: StatusEvent[] = [];
let scrub: NodeJS.Timeout | undefined;

function status(row: Row): MessageStatus {
  return {
    id: row.id,
    state: row.state,
    attempts: row.attempts,
    lastResponse: row.last_response,
    errorCode: row.error_code,
    acceptedAt: row.accepted_at,
    updatedAt: row.updated_at,
    nextAttemptAt: row.state === 'queued' || row.state === 'deferred' ? row.due_at : 0,
  };
}

/** Writes a record's new state, its event, and, once it is final, deletes its text. */
function move(row: Row, state: MessageState, at: number, fields: { attempts?: number; response?: string; errorCode?: string; dueAt?: number; connection?: string } = {}): Row {
  const next: Row = {
    ...row,
    state,
    attempts: fields.attempts ?? row.attempts,
    last_response: fields.response !== undefined ? maskAddresses(fields.response).slice(0, 512) : row.last_response,
    error_code: fields.errorCode ?? row.error_code,
    updated_at: at,
    due_at: isFinal(state) || state === 'sending' ? 0 : (fields.dueAt ?? row.due_at),
  };
  sql.update.run(next.state, next.attempts, next.last_response, next.error_code, next.updated_at, next.due_at, next.id);
  if (isFinal(state)) dropText(row.id);
  note(next, fields.connection);
  return next;
}

function note(row: Row, connection: string | undefined): void {
  const s = status(row);
  const info = sql.event.run(row.id, row.caller, s.state, s.attempts, s.lastResponse, s.errorCode, s.acceptedAt, s.updatedAt, s.nextAttemptAt, connection ?? null);
  written.push({ cursor: String(info.lastInsertRowid), status: s, ...(connection !== undefined ? { connection } : {}) });
}

function dropText(id: string): void {
  const size = sql.textBytes.get(id)?.bytes;
  if (size === undefined) return;
  sql.deleteText.run(id);
  bytes -= size;
  scrub ??= setTimeout(() => {
    scrub = undefined;
    // Its old copies of the deleted text leave the WAL with it.
    db.pragma('wal_checkpoint(TRUNCATE)');
  }, start.scrubMs);
}

function accept(messages: readonly NewMessage[]): Acceptance[] {
  return messages.map((m): Acceptance => {
    if (m.idempotency !== undefined) {
      const before = sql.byIdem.get(m.idempotency.key);
      if (before !== undefined) return before.fingerprint === m.idempotency.fingerprint ? { kind: 'existing', status: status(before) } : { kind: 'conflict' };
    }
    const envelope = JSON.stringify(m.envelope);
    const size = Buffer.byteLength(m.raw) + Buffer.byteLength(envelope);
    if (bytes + size > start.maxBytes) return { kind: 'full', bytes };
    sql.insert.run(m.id, m.caller, 'queued', m.acceptedAt, m.acceptedAt, m.dueAt, m.expiresAt, m.idempotency?.key ?? null, m.idempotency?.fingerprint ?? null);
    sql.insertText.run(m.id, envelope, m.raw, size);
    bytes += size;
    const row = sql.row.get(m.id) as Row;
    note(row, undefined);
    return { kind: 'accepted', status: status(row) };
  });
}

function nextDue(): number | undefined {
  return sql.nextDue.get()?.at ?? undefined;
}

function claim(n: number, now: number): { claimed: Claimed[]; nextDue: number | undefined } {
  const claimed: Claimed[] = [];
  for (const row of sql.due.all(now, n)) {
    const state = advance(row.state, 'CLAIM');
    const text = sql.text.get(row.id);
    if (state === undefined || text === undefined) continue;
    move(row, state, now);
    claimed.push({ id: row.id, caller: row.caller, envelope: JSON.parse(text.envelope) as Claimed['envelope'], raw: text.raw, attempts: row.attempts, acceptedAt: row.accepted_at, expiresAt: row.expires_at });
  }
  return { claimed, nextDue: nextDue() };
}

function record(changes: readonly Change[]): void {
  for (const c of changes) {
    const row = sql.row.get(c.id);
    const state = row === undefined ? undefined : advance(row.state, c.event);
    if (row === undefined || state === undefined) continue;
    move(row, state, c.at, {
      attempts: row.attempts + (c.attempted === true ? 1 : 0),
      ...(c.response !== undefined ? { response: c.response } : {}),
      ...(c.errorCode !== undefined ? { errorCode: c.errorCode } : {}),
      ...(c.nextAt !== undefined ? { dueAt: c.nextAt } : {}),
      ...(c.connection !== undefined ? { connection: c.connection } : {}),
    });
  }
}

function cancel(id: string, caller: string, now: number): Cancellation {
  const row = sql.rowOf.get(id, caller);
  if (row === undefined) return { kind: 'unknown' };
  const state = advance(row.state, 'CANCEL');
  if (state === undefined) return { kind: 'refused', status: status(row) };
  return { kind: 'cancelled', status: status(move(row, state, now)) };
}

function expire(now: number, limit: number): number {
  const rows = sql.expired.all(now, limit);
  for (const row of rows) {
    const state = advance(row.state, 'EXPIRE');
    if (state !== undefined) move(row, state, now, { errorCode: 'EEXPIRED' });
  }
  return rows.length;
}

function counts(): OutboxCounts {
  const states: Record<MessageState, number> = { queued: 0, sending: 0, sent: 0, deferred: 0, failed: 0, cancelled: 0 };
  for (const { state, n } of sql.counts.all()) states[state] = n;
  return { states, oldestQueuedAt: sql.oldestQueued.get()?.at ?? undefined, bytes };
}

function events(after: string, caller: string, limit: number): StatusEvent[] {
  const from = /^\d+$/.test(after) ? Number(after) : 0;
  return sql.eventsAfter.all(caller, from, limit).map((e) => ({
    cursor: String(e.seq),
    status: { id: e.id, state: e.state, attempts: e.attempts, lastResponse: e.last_response, errorCode: e.error_code, acceptedAt: e.accepted_at, updatedAt: e.updated_at, nextAttemptAt: e.next_attempt_at },
    ...(e.connection !== null ? { connection: e.connection } : {}),
  }));
}

function run(op: Op): unknown {
  switch (op.op) {
    case 'accept':
      return accept(op.messages);
    case 'claim':
      return claim(op.n, op.now);
    case 'record':
      return record(op.changes);
    case 'cancel':
      return cancel(op.id, op.caller, op.now);
    case 'expire':
      return expire(op.now, op.limit);
    case 'hasten':
      sql.hasten.run(op.now, op.now, ...ABSENCE);
      return nextDue();
    case 'purge':
      sql.forgetEnded.run(op.olderThan);
      sql.forgetEvents.run(op.olderThan);
      return undefined;
    case 'get': {
      const row = sql.rowOf.get(op.id, op.caller);
      return row === undefined ? undefined : status(row);
    }
    case 'events':
      return events(op.after, op.caller, op.limit);
    case 'latest':
      return String(sql.latest.get()?.seq ?? 0);
    case 'counts':
      return counts();
  }
}

/** Messages a crash left SENDING go back to QUEUED: their connection is gone, whatever it had sent. */
function recover(now: number): number {
  const rows = sql.sending.all();
  db.transaction(() => {
    for (const row of rows) {
      const state = advance(row.state, 'RELEASE');
      if (state !== undefined) move(row, state, now, { dueAt: now });
    }
  })();
  written = [];
  return rows.length;
}

send({ kind: 'ready', released: recover(start.now), nextDue: nextDue() });

port.on('message', (batch: Batch) => {
  written = [];
  const started = performance.now();
  const writes = batch.ops.some((op) => !READS.has(op.op));
  try {
    const results = writes ? db.transaction(() => batch.ops.map(run))() : batch.ops.map(run);
    send({ kind: 'done', seq: batch.seq, results, events: written, commitMs: writes ? performance.now() - started : 0 });
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    // The transaction rolled back: the byte count must follow.
    bytes = sql.bytes.get()?.n ?? 0;
    send({ kind: 'failed', seq: batch.seq, full: code === 'SQLITE_FULL', message: (err as Error).message });
  }
});
