// Opens the SQLite outbox at OUTBOX_PATH: its folder is made if need be, a
// file that cannot be opened or is damaged stops boot (exit 2, the path),
// and what a crash left SENDING is said and queued again.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { SqliteOutboxStore } from './sqlite-store.js';

export async function openSqliteOutbox(path: string, maxBytes: number, log: Logger, onCommit?: (ms: number) => void): Promise<SqliteOutboxStore> {
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch (err) {
    throw new MailroomError('ECONFIG', `invalid configuration:\n  OUTBOX_PATH=${JSON.stringify(path)}: cannot make its folder (${(err as Error).message})`, { cause: err });
  }
  const store = new SqliteOutboxStore({ path, maxBytes, ...(onCommit !== undefined ? { onCommit } : {}) });
  const { released, nextDue } = await store.open(Date.now());
  if (released > 0) log.warn('outbox: messages a stop left under way are queued again (the relay may have taken some: those may arrive twice)', { released });
  log.debug('outbox open', { path, due: nextDue });
  return store;
}
