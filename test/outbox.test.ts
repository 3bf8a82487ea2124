// The outbox through the public surface: SendMail in QUEUED mode answers
// once the message is on disk and mailroom delivers it; GetMessage,
// CancelMessage and WatchMessages tell and steer it; a relay that refuses
// for a while, or goes away for hours, loses nothing; a message too old
// fails EEXPIRED. Time that matters is an injected clock, moved by the test.
import { test, type TestContext } from 'node:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, faultEnv, metadataValue, relayEnv, sendMail, startService, startSmtp, waitForPool, type RunningService, type SmtpPeer } from './helpers.js';
import { FaultPeer, type Script } from './fault-peer.js';
import { RelaySwitch } from './relay-switch.js';
import { at, cancelMessage, getMessage, msOf, queue, until, watch } from './outbox-client.js';

/** A clock the test moves: epoch ms plus what it was moved by. */
function movableClock(): { now: () => number; move: (ms: number) => void } {
  let offset = 0;
  return { now: () => Date.now() + offset, move: (ms) => (offset += ms) };
}

async function rig(t: { after: (fn: () => Promise<void>) => void }, script?: Script, env: Record<string, string> = {}) {
  const peer = await FaultPeer.start(script === undefined ? {} : { script });
  const clock = movableClock();
  const svc = await startService(faultEnv(peer.port, { WORKERS: '2', ...env }), { clock: clock.now });
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  return { peer, svc, clock };
}

test('QUEUED: answered QUEUED once stored, then delivered once; GetMessage follows it to SENT', async (t) => {
  const { peer, svc } = await rig(t);
  const started = Date.now();
  const res = await queue(svc, { to: 'ann@example.com', subject: 'queued one', body: 'hello' });
  assert.equal(res.status, 'SUCCESS');
  assert.equal(res.state, 'MESSAGE_STATE_QUEUED');
  assert.match(res.message_id, /^<.+@example\.com>$/);
  assert.equal(res.smtp_response, '');
  const sent = await until(svc, res.message_id, 'MESSAGE_STATE_SENT');
  assert.equal(sent.attempts, 1);
  assert.match(sent.last_response, /^250 /);
  assert.equal(sent.error_code, '');
  assert.equal(sent.next_attempt_at, null);
  const accepted = msOf(sent.accepted_at) ?? 0;
  assert.ok(accepted >= started - 1000 && accepted <= Date.now(), 'accepted_at is when it was stored');
  assert.equal(peer.withSubject('queued one').length, 1);
  assert.equal(peer.messages[0]?.messageId, res.message_id);
  // SYNC mode is as it was.
  const sync = await sendMail(svc, { to: 'ann@example.com', subject: 'sync', body: 'b' });
  assert.equal(sync.state, 'MESSAGE_STATE_SENT');
  assert.match(sync.smtp_response, /^250 /);
});

test('send_at holds a message until then; too far ahead, or with SYNC, is INVALID_ARGUMENT', async (t) => {
  const { peer, svc, clock } = await rig(t);
  const later = await queue(svc, { to: 'ann@example.com', subject: 'later', body: 'b', send_at: at(clock.now() + 3_600_000) });
  const status = await getMessage(svc, later.message_id);
  assert.equal(status.state, 'MESSAGE_STATE_QUEUED');
  assert.ok(Math.abs((msOf(status.next_attempt_at) ?? 0) - (clock.now() + 3_600_000)) < 2000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(peer.withSubject('later').length, 0, 'not before its time');
  clock.move(3_600_000);
  await until(svc, later.message_id, 'MESSAGE_STATE_SENT');
  assert.equal(peer.withSubject('later').length, 1);
  const tooFar = await expectGrpcError(queue(svc, { to: 'ann@example.com', subject: 'far', body: 'b', send_at: at(clock.now() + 8 * 86_400_000) }));
  assert.equal(tooFar.code, grpc.status.INVALID_ARGUMENT);
  assert.match(tooFar.details, /send_at: at most 604800 s ahead/);
  const sync = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 's', body: 'b', send_at: at(clock.now() + 1000) }));
  assert.equal(sync.code, grpc.status.INVALID_ARGUMENT);
  assert.match(sync.details, /send_at: only with delivery DELIVERY_QUEUED/);
  const past = await queue(svc, { to: 'ann@example.com', subject: 'past', body: 'b', send_at: at(clock.now() - 60_000) });
  await until(svc, past.message_id, 'MESSAGE_STATE_SENT');
  for (const nanos of [1_000_000_000, -1]) {
    const bad = await expectGrpcError(queue(svc, { to: 'ann@example.com', subject: 'nanos', body: 'b', send_at: { seconds: String(Math.floor(clock.now() / 1000) + 60), nanos } }));
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT, `nanos ${nanos}`);
    assert.match(bad.details, /send_at: .*nanos from 0 to 999999999/);
  }
});

test('a 4xx defers the message with next_attempt_at and it is retried when due; a 5xx fails it at once with the code and the reply, addresses masked', async (t) => {
  let refuse = true;
  const { peer, svc, clock } = await rig(t, (c) =>
    c.stage === 'RCPT' && c.arg.includes('gone@') ? { reply: '550 5.1.1 <gone@example.com>: no such user' } : refuse && c.stage === 'dot' ? { reply: '451 4.3.0 try later' } : undefined,
  );
  const res = await queue(svc, { to: 'ann@example.com', subject: 'deferred', body: 'b' });
  const deferred = await until(svc, res.message_id, 'MESSAGE_STATE_DEFERRED');
  assert.equal(deferred.attempts, 1);
  assert.equal(deferred.last_response, '451 4.3.0 try later');
  const next = msOf(deferred.next_attempt_at) ?? 0;
  // OUTBOX_RETRY_BASE_SECONDS=30, first attempt: 15 to 30 s (equal jitter).
  assert.ok(next - clock.now() >= 14_000 && next - clock.now() <= 31_000, `due again in ${next - clock.now()} ms`);
  refuse = false;
  clock.move(31_000);
  const sent = await until(svc, res.message_id, 'MESSAGE_STATE_SENT');
  assert.equal(sent.attempts, 2);
  assert.equal(peer.withSubject('deferred').length, 1);

  const gone = await queue(svc, { to: 'gone@example.com', subject: 'refused', body: 'b' });
  const failed = await until(svc, gone.message_id, 'MESSAGE_STATE_FAILED');
  assert.equal(failed.error_code, 'ERECIPIENT');
  assert.equal(failed.last_response, '550 5.1.1 <g***@example.com>: no such user');
  assert.equal(failed.attempts, 1);
});

/** A service whose relay is switched off once the pool is up (the relay switch turns it back on). */
async function relayThatGoes(t: TestContext, clock?: () => number): Promise<{ smtp: SmtpPeer; relay: RelaySwitch; svc: RunningService }> {
  const smtp = await startSmtp();
  const relay = await RelaySwitch.start(smtp.port);
  const svc = await startService(relayEnv(relay.port, { WORKERS: '3', SMTP_BACKOFF_BASE_MS: '20', SMTP_BACKOFF_MAX_MS: '60', SMTP_UNREACHABLE_AFTER_MS: '100' }), clock !== undefined ? { clock } : {});
  t.after(async () => {
    await svc.close();
    await relay.off();
    await smtp.close();
  });
  await waitForPool(svc);
  await relay.off();
  return { smtp, relay, svc };
}

test('a relay away for hours loses no queued message, and on its return the backlog drains at once; past OUTBOX_MAX_AGE_SECONDS a message fails EEXPIRED', async (t) => {
  const clock = movableClock();
  const { smtp, relay, svc } = await relayThatGoes(t, clock.now);
  // A caller waiting in SYNC mode is told the relay is gone; a queued message is stored all the same.
  await new Promise((r) => setTimeout(r, 400));
  assert.equal((await expectGrpcError(sendMail(svc, { to: 'a@example.com', subject: 'sync', body: 'b' }))).code, grpc.status.UNAVAILABLE);
  const old = await queue(svc, { to: 'old@example.com', subject: 'too old', body: 'b' });
  clock.move(2 * 3_600_000);
  const ids = await Promise.all(Array.from({ length: 200 }, (_, i) => queue(svc, { to: `u${i}@example.com`, subject: `backlog ${i}`, body: 'b' }).then((r) => r.message_id)));
  // 22.5 hours on: the first message is 24.5 hours old, past OUTBOX_MAX_AGE_SECONDS (a day); the backlog is not.
  clock.move(22.5 * 3_600_000);
  await until(svc, old.message_id, 'MESSAGE_STATE_FAILED', 10_000);
  assert.equal((await getMessage(svc, old.message_id)).error_code, 'EEXPIRED');
  // While no connection can reach the relay, a due message says so (an outage spends no attempt).
  const waiting = await until(svc, ids[0] as string, 'MESSAGE_STATE_DEFERRED');
  assert.equal(waiting.error_code, 'EUNAVAILABLE');
  assert.match(waiting.last_response, /ECONNREFUSED/);
  assert.equal(waiting.attempts, 0);
  const back = Date.now();
  await relay.on();
  await smtp.waitForMessages(200, 10_000);
  assert.ok(Date.now() - back < 5000, `the backlog drained in ${Date.now() - back} ms, not one per backoff tick`);
  for (const id of ids) assert.equal((await getMessage(svc, id)).state, 'MESSAGE_STATE_SENT');
  assert.equal(smtp.messages.length, 200, 'each once, and the expired one never');
});

test('a relay away for a while: queued messages wait and all go when it is back', async (t) => {
  const { smtp, relay, svc } = await relayThatGoes(t);
  const ids = await Promise.all(Array.from({ length: 150 }, (_, i) => queue(svc, { to: `u${i}@example.com`, subject: `wait ${i}`, body: 'b' }).then((r) => r.message_id)));
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(smtp.messages.length, 0);
  await relay.on();
  await smtp.waitForMessages(150, 10_000);
  for (const id of ids) assert.equal((await getMessage(svc, id)).state, 'MESSAGE_STATE_SENT');
  assert.equal(new Set(smtp.messages.map((m) => /Subject: (wait \d+)/.exec(m.raw)?.[1])).size, 150, 'each once');
});

test('CancelMessage: a QUEUED or DEFERRED message is cancelled and never sent; a SENT one cannot be; an unknown one is NOT_FOUND', async (t) => {
  const { peer, svc, clock } = await rig(t, (c) => (c.stage === 'dot' && c.total === 0 && c.seen === 1 && c.conn === 1 ? { reply: '451 4.3.0 later' } : undefined), { WORKERS: '1' });
  const later = await queue(svc, { to: 'ann@example.com', subject: 'cancel me', body: 'b', send_at: at(clock.now() + 60_000) });
  const cancelled = await cancelMessage(svc, later.message_id);
  assert.equal(cancelled.state, 'MESSAGE_STATE_CANCELLED');
  const again = await expectGrpcError(cancelMessage(svc, later.message_id));
  assert.equal(again.code, grpc.status.FAILED_PRECONDITION);
  assert.match(again.details, /MESSAGE_STATE_CANCELLED/);
  const deferred = await queue(svc, { to: 'ann@example.com', subject: 'cancel deferred', body: 'b' });
  await until(svc, deferred.message_id, 'MESSAGE_STATE_DEFERRED');
  assert.equal((await cancelMessage(svc, deferred.message_id)).state, 'MESSAGE_STATE_CANCELLED');
  clock.move(120_000);
  const sent = await queue(svc, { to: 'ann@example.com', subject: 'sent', body: 'b' });
  await until(svc, sent.message_id, 'MESSAGE_STATE_SENT');
  assert.equal((await expectGrpcError(cancelMessage(svc, sent.message_id))).code, grpc.status.FAILED_PRECONDITION);
  assert.equal(peer.withSubject('cancel me').length + peer.withSubject('cancel deferred').length, 0, 'cancelled messages were not sent');
  const unknown = await expectGrpcError(getMessage(svc, '<nobody@example.com>'));
  assert.equal(unknown.code, grpc.status.NOT_FOUND);
  assert.equal(metadataValue(unknown, 'mailroom-error'), 'ENOTFOUND');
  assert.equal((await expectGrpcError(cancelMessage(svc, '<nobody@example.com>'))).code, grpc.status.NOT_FOUND);
  assert.equal((await expectGrpcError(getMessage(svc, 'not an id'))).code, grpc.status.INVALID_ARGUMENT);
});

test('WatchMessages: every state change in order with a cursor; a watcher that comes back with its last cursor gets every later event, none twice', async (t) => {
  const { svc } = await rig(t);
  const first = watch(svc);
  await first.live;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await queue(svc, { to: 'ann@example.com', subject: `w${i}`, body: 'b' })).message_id);
  await first.until((events) => events.filter((e) => e.status?.state === 'MESSAGE_STATE_SENT').length === 3);
  for (const id of ids) {
    assert.deepEqual(
      first.events.filter((e) => e.status?.message_id === id).map((e) => e.status?.state),
      ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_SENDING', 'MESSAGE_STATE_SENT'],
    );
  }
  assert.deepEqual(
    first.events.filter((e) => e.status?.message_id === ids[0]).map((e) => e.status?.state),
    ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_SENDING', 'MESSAGE_STATE_SENT'],
    'in order',
  );
  assert.equal(new Set(first.events.map((e) => e.cursor)).size, first.events.length, 'each event its own cursor');
  // Go away after the fourth event; come back from there.
  const fourth = first.events[3]?.cursor ?? '';
  first.close();
  for (let i = 3; i < 5; i++) ids.push((await queue(svc, { to: 'ann@example.com', subject: `w${i}`, body: 'b' })).message_id);
  const resumed = watch(svc, fourth);
  await resumed.until((events) => events.filter((e) => e.status?.state === 'MESSAGE_STATE_SENT').length === 4);
  const seen = resumed.events.map((e) => e.cursor);
  assert.equal(new Set(seen).size, seen.length, 'none twice');
  assert.deepEqual(
    seen.slice(0, first.events.length - 4),
    first.events.slice(4).map((e) => e.cursor),
    'it picks up right after the cursor it left at',
  );
  resumed.close();
});

test('idempotency_key in QUEUED mode: a repeat is the same message, stored once; another request with the key is FAILED_PRECONDITION', async (t) => {
  const { peer, svc } = await rig(t);
  const req = { to: 'ann@example.com', subject: 'once', body: 'b', idempotency_key: 'order-1' };
  const [a, b] = await Promise.all([queue(svc, req), queue(svc, req)]);
  assert.equal(a.message_id, b.message_id);
  await until(svc, a.message_id, 'MESSAGE_STATE_SENT');
  const c = await queue(svc, req);
  assert.equal(c.message_id, a.message_id);
  assert.equal(c.state, 'MESSAGE_STATE_SENT');
  assert.equal(peer.withSubject('once').length, 1);
  const other = await expectGrpcError(queue(svc, { ...req, body: 'another' }));
  assert.equal(other.code, grpc.status.FAILED_PRECONDITION);
});

test('OUTBOX_MAX_BYTES: a message that would take the outbox over it is RESOURCE_EXHAUSTED with retry-after; nothing else changes', async (t) => {
  // The relay holds every message: what is accepted stays stored.
  const { svc } = await rig(t, (c) => (c.stage === 'dot' ? { delay: 60_000 } : undefined), { OUTBOX_MAX_BYTES: String(1_048_576), OUTBOX_MAX_BYTES_PER_CALLER: String(1_048_576), SMTP_DATA_TIMEOUT_MS: '120000' });
  const body = 'x'.repeat(200_000);
  const outcomes = [];
  for (let i = 0; i < 8; i++) outcomes.push(await queue(svc, { to: 'ann@example.com', subject: `big ${i}`, body }).then((r) => r.message_id, (e: grpc.ServiceError) => e));
  const refused = outcomes.filter((o): o is grpc.ServiceError => typeof o !== 'string');
  // A line of 200,000 characters goes base64: about 270 KB stored each, three fit in 1 MiB.
  assert.equal(refused.length, 5, `${refused.length} of 8 refused`);
  for (const err of refused) {
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /OUTBOX_MAX_BYTES/);
    assert.ok(Number(metadataValue(err, 'retry-after')) > 0);
  }
  for (const id of outcomes.filter((o): o is string => typeof o === 'string')) assert.notEqual((await getMessage(svc, id)).state, 'MESSAGE_STATE_FAILED');
});

test('callers are isolated: with tokens, a caller sees, cancels and watches only its own messages', async (t) => {
  const peer = await FaultPeer.start();
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-outbox-callers-')), 'tokens');
  const SHOP = `shop-${'s'.repeat(40)}`;
  const OTHER = `other-${'o'.repeat(40)}`;
  writeFileSync(file, `shop ${SHOP}\nother ${OTHER}\n`);
  const svc = await startService(faultEnv(peer.port, { WORKERS: '1', AUTH_TOKENS_FILE: file }));
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  const shop = { authorization: `Bearer ${SHOP}` };
  const other = { authorization: `Bearer ${OTHER}` };
  const otherWatch = watch(svc, '', other);
  const shopWatch = watch(svc, '', shop);
  await Promise.all([otherWatch.live, shopWatch.live]);
  const mine = await queue(svc, { to: 'ann@example.com', subject: 'mine', body: 'b', send_at: at(Date.now() + 3_600_000) }, shop);
  assert.equal((await getMessage(svc, mine.message_id, shop)).state, 'MESSAGE_STATE_QUEUED');
  assert.equal((await expectGrpcError(getMessage(svc, mine.message_id, other))).code, grpc.status.NOT_FOUND);
  assert.equal((await expectGrpcError(cancelMessage(svc, mine.message_id, other))).code, grpc.status.NOT_FOUND);
  assert.equal((await getMessage(svc, mine.message_id, shop)).state, 'MESSAGE_STATE_QUEUED', 'the other caller cancelled nothing');
  const theirs = await queue(svc, { to: 'bob@example.com', subject: 'theirs', body: 'b', send_at: at(Date.now() + 3_600_000) }, other);
  await shopWatch.until((events) => events.length >= 1);
  await otherWatch.until((events) => events.length >= 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(shopWatch.events.map((e) => e.status?.message_id), [mine.message_id]);
  assert.deepEqual(otherWatch.events.map((e) => e.status?.message_id), [theirs.message_id]);
  shopWatch.close();
  otherWatch.close();
  // A cursor is its caller's: another caller's, or anything else, is refused, never "from the start".
  const shopCursor = shopWatch.events[0]?.cursor ?? '';
  for (const after of [shopCursor, 'abc', '0-0', '12']) {
    const stolen = watch(svc, after, other);
    const err = await stolen.ended;
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, `after=${after}`);
    assert.match(err?.details ?? '', /after: not a cursor WatchMessages gave this caller/);
  }
  assert.doesNotMatch(shopCursor, /^\d+$|^\d+-\d+$/, 'opaque: it does not count anyone\'s events');
  const resumed = watch(svc, shopCursor, shop);
  await resumed.live;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(resumed.events.length, 0, 'its own caller resumes from it');
  resumed.close();
});

export type { RunningService };
