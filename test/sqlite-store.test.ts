// The SQLite store on its own, with a real file: a worker thread that ends
// takes the store down (writes fail at once, outcomes are kept), and a probe
// starts another that finds everything where it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { NORMAL_LANE } from '../src/mail/lane.js';
import { SqliteOutboxStore } from '../src/outbox/sqlite-store.js';
import type { StoreHealth } from '../src/outbox/store.js';
import { createLogger } from '../src/log.js';
import { freshOutbox } from './helpers.js';

const settings = { retryBaseMs: 1000, retryMaxMs: 2000, maxBytes: 1_000_000, maxBytesPerCaller: 1_000_000, bulkShare: 0.1 };
const log = createLogger({ level: 'error', format: 'json', silent: true });

function message(id: string, now: number) {
  return { id, caller: '', owner: '', lane: NORMAL_LANE, envelope: { from: 'a@example.com', to: ['b@example.com'] }, raw: 'Subject: s\r\n\r\nb\r\n', acceptedAt: now, dueAt: now, expiresAt: now + 60_000 };
}

test('a worker thread that ends: the store is down at once, writes fail fast, outcomes are kept; a probe starts another and writes them', async () => {
  const store = new SqliteOutboxStore({ path: freshOutbox(), settings, log });
  await store.open(Date.now());
  const health: StoreHealth[] = [];
  store.onHealth((h) => health.push(h));
  const now = Date.now();
  await store.accept([message('<a@x>', now), message('<b@x>', now)], now);
  const { claimed } = await store.claim(2, now);
  assert.equal(claimed.length, 2);

  await (store as unknown as { worker: Worker }).worker.terminate();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(store.health.up, false);
  assert.equal(health.at(-1)?.up, false);
  assert.match(store.health.error?.message ?? '', /worker/);
  const refused = await store.accept([message('<c@x>', now)], now).catch((err: Error & { code?: string }) => err);
  assert.ok(refused instanceof Error && refused.code === 'ESTORE', 'a write fails at once');
  // An outcome that comes meanwhile is kept, not lost.
  const recorded = store.record([{ id: '<a@x>', event: 'DELIVERED', at: now, attempted: true, response: '250 ok' }]);

  await store.probe();
  assert.equal(store.health.up, true);
  await recorded;
  assert.equal((await store.get('<a@x>', ''))?.state, 'sent', 'the kept outcome was written: it is not sent again');
  // <b@x> is still SENDING: its connection holds it (only a process that starts gives such messages back).
  assert.equal((await store.get('<b@x>', ''))?.state, 'sending');
  await store.record([{ id: '<b@x>', event: 'DELIVERED', at: now, attempted: true, response: '250 ok' }]);
  assert.equal((await store.get('<b@x>', ''))?.state, 'sent');
  await store.close();
});
