// Opens the SQLite outbox at OUTBOX_PATH: its folder is made if need be;
// its WAL is read before SQLite opens it (wal-check.ts), since SQLite drops
// a damaged log without a word; a file that cannot be opened or is damaged
// stops boot (exit 2, the path, what is wrong), unless OUTBOX_ACCEPT_DAMAGED
// says to start anyway, and then what is dropped is logged. A disk that is
// full, or will not write, is an outage, not a reason to stop: the store
// opens down and recovers when probed.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { OutboxSettings } from './settings.js';
import { SqliteOutboxStore } from './sqlite-store.js';
import { checkWal } from './wal-check.js';

export interface SqliteOpenOptions {
  readonly path: string;
  readonly settings: Pick<OutboxSettings, 'retryBaseMs' | 'retryMaxMs' | 'maxBytes' | 'maxBytesPerCaller' | 'bulkShare'>;
  /** OUTBOX_ACCEPT_DAMAGED: start on a damaged WAL, dropping what SQLite would */
  readonly acceptDamaged: boolean;
  readonly log: Logger;
  readonly onCommit?: (ms: number) => void;
}

export async function openSqliteOutbox(o: SqliteOpenOptions): Promise<SqliteOutboxStore> {
  const where = `OUTBOX_PATH=${JSON.stringify(o.path)}`;
  try {
    mkdirSync(dirname(o.path), { recursive: true });
  } catch (err) {
    throw new MailroomError('ECONFIG', `invalid configuration:\n  ${where}: cannot make its folder (${(err as Error).message})`, { cause: err });
  }
  const wal = checkWal(o.path);
  if (!wal.ok) {
    if (!o.acceptDamaged) {
      throw new MailroomError('ECONFIG', `invalid configuration:\n  ${where}: the outbox is damaged: ${wal.problem}; starting would drop ${wal.dropped}. Restore the file, or set OUTBOX_ACCEPT_DAMAGED=1 to start without what is damaged`);
    }
    o.log.error('outbox: starting on a damaged WAL (OUTBOX_ACCEPT_DAMAGED): what it holds from the damage on is dropped', { path: o.path, problem: wal.problem, dropped: wal.dropped });
  }
  const store = new SqliteOutboxStore({ path: o.path, settings: o.settings, log: o.log, ...(o.onCommit !== undefined ? { onCommit: o.onCommit } : {}) });
  await store.open(Date.now());
  o.log.debug('outbox open', { path: o.path, up: store.health.up });
  return store;
}
