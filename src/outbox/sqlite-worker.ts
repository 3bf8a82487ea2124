// The SQLite outbox, in a thread of its own: a commit's fsync (and the
// writes before it) never holds the event loop that answers calls. Each
// batch from the main thread is one transaction: the writes of one turn of
// its loop share one fsync (WAL, synchronous=FULL), and when the reply
// goes back the batch is on disk. secure_delete zeroes what a DELETE frees,
// and a TRUNCATE checkpoint soon after deletes the WAL's older copies of
// it: a sent message's text is gone from the files, not only the table.
//
// Nothing a disk does ends this thread: a batch that fails (SQLITE_FULL,
// SQLITE_IOERR) rolls back and is answered as failed; a checkpoint that
// fails is tried again later; an open that fails says whether the file is
// damaged (the service must not start) or only cannot be had now.
import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { MIGRATIONS, SCHEMA, SCHEMA_VERSION } from './sqlite-schema.js';
import { OutboxTables } from './sqlite-tables.js';
import { READS, type Batch, type Op, type WorkerMessage, type WorkerStart } from './sqlite-protocol.js';

const start = workerData as WorkerStart;
const port = parentPort;
if (port === null) throw new Error('the outbox worker runs in a worker thread');

const send = (message: WorkerMessage): void => port.postMessage(message);

const codeOf = (err: unknown): string => String((err as { code?: unknown }).code ?? '');
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** A file that is not a sound outbox: starting on it would lose or invent messages. */
class Damaged extends Error {}

/** the longest a failed checkpoint waits before it is tried again */
const SCRUB_MAX_MS = 30_000;

function open(): { db: Database.Database; tables: OutboxTables } {
  const db = new Database(start.path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('secure_delete = ON');
    db.pragma('busy_timeout = 5000');
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Damaged(`the database is damaged: ${String(check)}`);
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Damaged(`written by a newer mailroom (schema ${version}, this one knows ${SCHEMA_VERSION})`);
    db.transaction(() => {
      for (let v = version; v > 0 && v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v] ?? '');
      db.exec(SCHEMA);
      if (version !== SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
    return { db, tables: new OutboxTables(db, start.settings, scheduleScrub) };
  } catch (err) {
    db.close();
    throw err;
  }
}

let scrub: NodeJS.Timeout | undefined;
let scrubFailures = 0;
let db: Database.Database | undefined;

function scheduleScrub(): void {
  scrub ??= setTimeout(runScrub, scrubFailures === 0 ? start.scrubMs : Math.min(SCRUB_MAX_MS, start.scrubMs * 2 ** scrubFailures));
}

function runScrub(): void {
  scrub = undefined;
  try {
    // Its old copies of the deleted text leave the WAL with it.
    db?.pragma('wal_checkpoint(TRUNCATE)');
    if (scrubFailures > 0) send({ kind: 'scrub', ok: true, message: 'the WAL is checkpointed again' });
    scrubFailures = 0;
  } catch (err) {
    scrubFailures++;
    send({ kind: 'scrub', ok: false, message: `${codeOf(err)}: ${messageOf(err)}` });
    scheduleScrub();
  }
}

let tables: OutboxTables;
try {
  ({ db, tables } = open());
  // A worker started again in the same process finds SENDING what its
  // connections still hold (or whose outcomes wait to be written): only the
  // first open of a process gives them back.
  const released = start.recover ? tables.recover(start.now) : 0;
  const cursorKey = tables.cursorKey(randomBytes(32).toString('hex'));
  send({ kind: 'ready', released, nextDue: tables.nextDue(), cursorKey });
} catch (err) {
  const code = codeOf(err);
  const damage = err instanceof Damaged || /^SQLITE_(CORRUPT|NOTADB)/.test(code) || (start.first && /^SQLITE_(CANTOPEN|READONLY|PERM|AUTH)/.test(code));
  if (damage) send({ kind: 'fatal', message: messageOf(err) });
  else send({ kind: 'down', code: code || 'EIO', message: messageOf(err) });
  process.exit(0);
}

function run(op: Op): unknown {
  switch (op.op) {
    case 'accept':
      return tables.accept(op.messages);
    case 'claim':
      return tables.claim(op.n, op.now);
    case 'record':
      return tables.record(op.changes);
    case 'cancel':
      return tables.cancel(op.id, op.caller, op.now);
    case 'deferDue':
      return tables.deferDue(op.now, op.limit, op.away);
    case 'expire':
      return tables.expire(op.now, op.limit);
    case 'hasten':
      return tables.hasten(op.now);
    case 'purge':
      return tables.purge(op.olderThan);
    case 'probe':
      return tables.probe(op.now);
    case 'get':
      return tables.get(op.id, op.caller);
    case 'events':
      return tables.eventsAfter(/^\d+$/.test(op.after) ? Number(op.after) : 0, op.caller, op.limit);
    case 'latest':
      return String(tables.latest());
    case 'counts':
      return tables.counts();
    case 'remember':
      return tables.remember(op.sent);
    case 'report':
      return tables.report(op.report);
    case 'suppress':
      return tables.suppressions.add(op.entry).entry;
    case 'unsuppress':
      return tables.suppressions.remove(op.digest);
    case 'suppression':
      return tables.suppressions.get(op.digest);
    case 'suppressions':
      return tables.suppressions.page(op.after, op.limit);
  }
}

const transaction = (db as Database.Database).transaction((ops: readonly Op[]) => ops.map(run));

port.on('message', (batch: Batch) => {
  tables.begin();
  const started = performance.now();
  const writes = batch.ops.some((op) => !READS.has(op.op));
  try {
    const results = writes ? transaction(batch.ops) : batch.ops.map(run);
    send({ kind: 'done', seq: batch.seq, results, events: tables.events(), commitMs: writes ? performance.now() - started : 0 });
  } catch (err) {
    tables.rolledBack();
    send({ kind: 'failed', seq: batch.seq, code: codeOf(err), message: messageOf(err) });
  }
});
