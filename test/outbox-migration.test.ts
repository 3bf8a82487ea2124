// An outbox written by an older mailroom (schema 1: before lanes and
// delivery reports) opens in this one: what it had queued is delivered,
// what it had sent keeps its status, and new messages get return paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { freshOutbox, relayEnv, startService, startSmtp } from './helpers.js';
import { getMessage, queue, until } from './outbox-client.js';

const SCHEMA_1 = readFileSync(fileURLToPath(new URL('../../test/fixtures/outbox-schema-1.sql', import.meta.url)), 'utf8');

test('a schema-1 outbox migrates: its queued message is delivered, its sent one is still answered, new mail has a return path', async (t) => {
  const path = freshOutbox();
  const db = new Database(path);
  db.exec(SCHEMA_1);
  const now = Date.now();
  const raw = 'From: sender@example.com\r\nTo: old@example.com\r\nSubject: from before\r\nMessage-ID: <old-queued@example.com>\r\n\r\nqueued by an older mailroom\r\n';
  db.prepare('INSERT INTO messages (id, caller, state, accepted_at, updated_at, due_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)').run('<old-queued@example.com>', '', 'queued', now, now, now, now + 3_600_000);
  db.prepare('INSERT INTO texts (id, envelope, raw, bytes) VALUES (?, ?, ?, ?)').run('<old-queued@example.com>', JSON.stringify({ from: 'sender@example.com', to: ['old@example.com'] }), raw, raw.length);
  db.prepare('INSERT INTO messages (id, caller, state, attempts, accepted_at, updated_at, due_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run('<old-sent@example.com>', '', 'sent', 1, now, now, 0, now);
  db.pragma('user_version = 1');
  db.close();

  const smtp = await startSmtp();
  const svc = await startService(relayEnv(smtp.port, { OUTBOX_PATH: path, WORKERS: '1', BOUNCE_DOMAIN: 'bounces.example.test' }));
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  await until(svc, '<old-queued@example.com>', 'MESSAGE_STATE_SENT');
  assert.ok(smtp.messages.some((m) => m.raw.includes('queued by an older mailroom')));
  assert.equal((await getMessage(svc, '<old-sent@example.com>')).state, 'MESSAGE_STATE_SENT');
  const fresh = await queue(svc, { to: 'new@example.com', subject: 'new', body: 'b' });
  await until(svc, fresh.message_id, 'MESSAGE_STATE_SENT');
  assert.match(smtp.messages.find((m) => m.raw.includes(fresh.message_id))?.from ?? '', /^b\+[a-z2-7]{26}@bounces\.example\.test$/);
  const check = new Database(path, { readonly: true });
  assert.equal(check.pragma('user_version', { simple: true }), 3);
  check.close();
});
