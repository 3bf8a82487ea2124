// The suppression list's table (sqlite-schema.ts), in the outbox worker's
// transactions: an address by its digest, never in clear.
import type Database from 'better-sqlite3';
import type { SuppressionEntry, SuppressionReason } from './store.js';

interface Row {
  digest: string;
  masked: string;
  reason: SuppressionReason;
  since: number;
  message_id: string;
}

const entry = (r: Row): SuppressionEntry => ({ digest: r.digest, masked: r.masked, reason: r.reason, since: r.since, messageId: r.message_id });

export class SuppressionTables {
  private readonly sql;

  constructor(db: Database.Database) {
    this.sql = {
      get: db.prepare<[string], Row>('SELECT * FROM suppressions WHERE digest = ?'),
      add: db.prepare('INSERT OR IGNORE INTO suppressions (digest, masked, reason, since, message_id) VALUES (?, ?, ?, ?, ?)'),
      remove: db.prepare('DELETE FROM suppressions WHERE digest = ?'),
      page: db.prepare<[string, number], Row>('SELECT * FROM suppressions WHERE digest > ? ORDER BY digest LIMIT ?'),
    };
  }

  /** The entry as stored after: the one there before, if any. */
  add(e: SuppressionEntry): { entry: SuppressionEntry; added: boolean } {
    const added = this.sql.add.run(e.digest, e.masked, e.reason, e.since, e.messageId).changes > 0;
    return { entry: added ? e : entry(this.sql.get.get(e.digest) as Row), added };
  }

  remove(digest: string): SuppressionEntry | undefined {
    const row = this.sql.get.get(digest);
    if (row !== undefined) this.sql.remove.run(digest);
    return row === undefined ? undefined : entry(row);
  }

  get(digest: string): SuppressionEntry | undefined {
    const row = this.sql.get.get(digest);
    return row === undefined ? undefined : entry(row);
  }

  page(after: string, limit: number): SuppressionEntry[] {
    return this.sql.page.all(after, limit).map(entry);
  }
}
