// The SQLite outbox's tables. `messages` holds statuses only (no subject,
// body or address); `texts` holds what is sent, and loses a message's row
// when it is final; `events` is the ordered log WatchMessages reads, its
// rowid the cursor; `meta` holds what a health probe writes; `suppressions`
// the addresses not mailed any more, by digest (bounce/address-key.ts) with
// only a masked form beside it. The partial indexes cover exactly the rows the hot
// queries look at: what is due (by lane and by owner, for the claim's turns),
// what expires, what retention forgets.
export const SCHEMA_VERSION = 3;

/** From each older version to this one, in order (an outbox of version 0 is new: SCHEMA makes it whole). */
export const MIGRATIONS: Readonly<Record<number, string>> = {
  // lanes and callers' turns (docs/operating.md): what was queued before has no priority, and one owner
  1: `
ALTER TABLE messages ADD COLUMN lane INTEGER NOT NULL DEFAULT 2;
ALTER TABLE messages ADD COLUMN owner TEXT NOT NULL DEFAULT '';
`,
  // delivery reports (docs/bounces.md): what was sent before has no return path, so no report finds it; and traces
  2: `
ALTER TABLE messages ADD COLUMN bounce_key TEXT;
ALTER TABLE messages ADD COLUMN recipients TEXT;
ALTER TABLE messages ADD COLUMN bounces TEXT;
ALTER TABLE messages ADD COLUMN trace TEXT;
ALTER TABLE events ADD COLUMN bounces TEXT;
DROP INDEX IF EXISTS messages_ended;
`,
};

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  caller TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_response TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  accepted_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  due_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  idem TEXT UNIQUE,
  fingerprint TEXT,
  lane INTEGER NOT NULL DEFAULT 2,
  owner TEXT NOT NULL DEFAULT '',
  bounce_key TEXT,
  recipients TEXT,
  bounces TEXT,
  trace TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_bounce_key ON messages (bounce_key) WHERE bounce_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_due ON messages (due_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX IF NOT EXISTS messages_turns ON messages (lane, owner, due_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX IF NOT EXISTS messages_expiry ON messages (expires_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX IF NOT EXISTS messages_ended ON messages (updated_at) WHERE state IN ('sent', 'failed', 'cancelled', 'bounced', 'complained');
CREATE INDEX IF NOT EXISTS messages_sending ON messages (id) WHERE state = 'sending';
CREATE TABLE IF NOT EXISTS texts (
  id TEXT PRIMARY KEY,
  envelope TEXT NOT NULL,
  raw TEXT NOT NULL,
  bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  caller TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_response TEXT NOT NULL,
  error_code TEXT NOT NULL,
  accepted_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  connection TEXT,
  bounces TEXT
);
CREATE INDEX IF NOT EXISTS events_by_caller ON events (caller, seq);
CREATE INDEX IF NOT EXISTS events_by_time ON events (updated_at);
CREATE TABLE IF NOT EXISTS suppressions (
  digest TEXT PRIMARY KEY,
  masked TEXT NOT NULL,
  reason TEXT NOT NULL,
  since INTEGER NOT NULL,
  message_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
  k TEXT PRIMARY KEY,
  v
) WITHOUT ROWID;
`;
