// Recycling a session near SMTP_MAX_MESSAGES_PER_CONNECTION without a gap:
// the successor is dialled while the old session still sends, and takes
// over the moment the old one is spent. Every test goes through gRPC to the
// fault peer and reads what the peer saw: which connection carried what,
// when each opened and closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mail, recordingLogger, sendMail, startRig } from './helpers.js';
import type { FaultPeer } from './fault-peer.js';

/** Sends `n` mails, `concurrency` at a time, and asserts each came back SUCCESS. */
async function sendAll(svc: Parameters<typeof sendMail>[0], n: number, concurrency: number, label: string): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const res = await sendMail(svc, mail(`${label}-${next++}`));
      assert.equal(res.status, 'SUCCESS');
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function eachSubjectOnce(peer: FaultPeer, n: number): void {
  const subjects = peer.messages.map((m) => /^Subject: (.*)$/m.exec(m.data)?.[1]);
  assert.equal(peer.messages.length, n);
  assert.equal(new Set(subjects).size, n, 'no message twice');
}

test('near its cap a connection dials its successor while still sending, and hands over without a gap', async (t) => {
  const { logger, entries } = recordingLogger('debug');
  const { peer, svc } = await startRig(t, {}, { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '20' }, { log: logger });
  await sendAll(svc, 70, 4, 'handover');
  eachSubjectOnce(peer, 70);
  const spent = peer.connections.filter((c) => c.quit);
  assert.ok(spent.length >= 3, `70 messages at a cap of 15 to 20 spend at least three sessions (spent ${spent.length})`);
  for (const old of spent) {
    assert.ok(old.accepted >= 15 && old.accepted <= 20, `connection ${old.n} carried ${old.accepted}, its cap is 15 to 20`);
    const successor = peer.connections[old.n] ?? assert.fail(`connection ${old.n} had no successor`);
    assert.ok(successor.openedAt < (old.closedAt ?? Infinity), `connection ${successor.n} was open before ${old.n} closed`);
    // Only the old session's messages came before the hand-over; the successor's all after.
    const lastOld = Math.max(...peer.messages.filter((m) => m.conn === old.n).map((m) => m.at));
    assert.ok(peer.messages.filter((m) => m.conn === successor.n).every((m) => m.at >= lastOld));
  }
  assert.equal(entries.filter((e) => e.message === 'connecting').length, 1, 'one dial by the connection itself: the first');
  assert.deepEqual(entries.filter((e) => e.level === 'warn' || e.level === 'error'), [], 'recycling is routine: no warning');
  assert.deepEqual(peer.violations, []);
});

test('a successor whose dial fails leaves the connection to re-dial as before; nothing is lost', async (t) => {
  const { logger, entries } = recordingLogger('debug');
  // Every second connection (each one dialled ahead) is refused at EHLO.
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'EHLO' && c.conn % 2 === 0 ? { reply: '421 4.3.2 too many connections', close: true } : undefined) },
    { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '16' },
    { log: logger },
  );
  await sendAll(svc, 60, 3, 'fallback');
  eachSubjectOnce(peer, 60);
  assert.ok(peer.messages.every((m) => m.conn % 2 === 1), 'only the connections dialled after QUIT carried mail');
  const noSuccessor = entries.filter((e) => e.message === 'no successor session: dialling now');
  assert.ok(noSuccessor.length >= 2, `the fallback was taken (${noSuccessor.length} times)`);
  assert.ok(noSuccessor.every((e) => e['code'] === 'ECONNECTION' || e['code'] === 'ESMTP_TRANSIENT'), JSON.stringify(noSuccessor.map((e) => e['code'])));
  assert.deepEqual(peer.violations, []);
});

test('a successor left idle past the keepalive is let go (QUIT), and the spent session re-dials', async (t) => {
  const { peer, svc } = await startRig(t, {}, { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '16', SMTP_KEEPALIVE_MS: '150' });
  // One at a time until the successor is dialled (its cap is 12 to 16, the dial comes 3 or 4 before it).
  let sent = 0;
  while (peer.connections.length < 2) {
    await sendAll(svc, 1, 1, `idle-${sent++}`);
    assert.ok(sent <= 12, 'a successor was dialled before the cap');
  }
  const successor = peer.connections[1] as (typeof peer.connections)[number];
  await peer.until(() => successor.closedAt !== undefined, 3000, 'the idle successor closed');
  assert.equal(successor.quit, true, 'it said QUIT');
  assert.equal(successor.accepted, 0);
  await sendAll(svc, 16, 1, 'after-idle');
  eachSubjectOnce(peer, sent + 16);
  assert.ok(peer.connections.length >= 3, 'the spent session was replaced by a fresh dial');
  assert.deepEqual(peer.violations, []);
});
