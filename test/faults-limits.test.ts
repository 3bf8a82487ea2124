// Limits under load: the rate cap makes jobs wait (never refuses them), a full
// queue refuses at once without touching what is queued, a caller's deadline
// keeps an unstarted job from being sent, and idempotency keys never send twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, sendMail, sleep, startRig, waitForPool } from './helpers.js';
import type { FaultPeer } from './fault-peer.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

test('rate limit: jobs over SEND_RATE_LIMIT_PER_SECOND wait in the queue and are spaced, none refused', async (t) => {
  const rate = 20;
  const n = 40;
  const { peer, svc } = await startRig(t, {}, { WORKERS: '4', SEND_RATE_LIMIT_PER_SECOND: String(rate) });
  await waitForPool(svc);
  const fired = Date.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => sendMail(svc, mail(`rate-${i}`))));
  assert.ok(results.every((r) => r.status === 'SUCCESS'), 'none refused');
  assert.equal(peer.messages.length, n);
  // The token bucket's invariant: it holds one second's worth (full at
  // most), then gains one token every 50 ms, so message i (from 0) cannot
  // start before (i + 1 - rate) * 50 ms after the calls were made. Lag on a
  // busy machine only makes messages later, never earlier.
  const starts = peer.commands.filter((c) => c.verb === 'MAIL').map((c) => c.at - fired);
  for (let i = rate; i < n; i++) {
    const earliest = (i + 1 - rate) * (1000 / rate);
    assert.ok((starts[i] as number) >= earliest - 5, `message ${i} started ${starts[i]} ms in, the cap allows no earlier than ${earliest}`);
  }
  // …and the queue does not wait much longer than the cap asks.
  assert.ok((starts[n - 1] as number) < ((n - rate) * 1000) / rate + 2000, `the last started ${starts[n - 1]} ms in`);
  noViolations(peer);
});

test('backpressure: a full queue refuses at once with RESOURCE_EXHAUSTED; what is queued is delivered', async (t) => {
  let hold = true;
  const { peer, svc } = await startRig(
    t,
    // The first message's final reply comes late, keeping the one connection busy.
    { script: (c) => (c.stage === 'dot' && hold && c.total === 0 ? { delay: 1500 } : undefined) },
    { WORKERS: '1', QUEUE_LIMIT: '3', QUEUE_LIMIT_PER_CALLER: '3', SMTP_DATA_TIMEOUT_MS: '5000' },
  );
  const busy = sendMail(svc, mail('in-flight'));
  await peer.until(() => peer.count('DATA') === 1, 2000, 'the first DATA');
  // Calls over one HTTP/2 connection reach the service in the order they were made: these three fill the queue.
  const queuedReqs = [mail('queued-1'), mail('queued-2'), mail('queued-3')];
  const waiting = queuedReqs.map((r) => sendMail(svc, r));
  const started = Date.now();
  const refusedReq = mail('refused');
  const err = await expectGrpcError(sendMail(svc, refusedReq));
  // generous against a loaded machine, still far from the 1.5 s the busy connection takes
  assert.ok(Date.now() - started < 750, 'refused at once, not after a wait');
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.deepEqual(err.metadata.get('retry-after'), ['1']);
  hold = false;
  const results = await Promise.all([busy, ...waiting]);
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  assert.equal(peer.messages.length, 4);
  assert.equal(peer.withSubject(refusedReq.subject).length, 0);
  noViolations(peer);
});

test("deadlines: a job whose caller's deadline passed before it started is never sent; the call ends DEADLINE_EXCEEDED", async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' && c.total === 0 ? { delay: 1200 } : undefined) }, { WORKERS: '1', SMTP_DATA_TIMEOUT_MS: '5000' });
  const first = sendMail(svc, mail('slow'));
  await peer.until(() => peer.count('DATA') === 1, 2000, 'the first DATA');
  const late = mail('late');
  const started = Date.now();
  const err = await expectGrpcError(sendMail(svc, late, { deadline: Date.now() + 100 }));
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
  assert.ok(Date.now() - started < 700, 'ended at its deadline, not when the slow job let go');
  const patient = mail('patient');
  const [a, c] = await Promise.all([first, sendMail(svc, patient, { deadline: Date.now() + 5000 })]);
  assert.equal(a.status, 'SUCCESS');
  assert.equal(c.status, 'SUCCESS');
  await sleep(100);
  assert.equal(peer.withSubject(late.subject).length, 0, 'the job of a caller that gave up was not sent');
  assert.equal(peer.count('MAIL'), 2);
  noViolations(peer);
});

test('deadlines: a job whose deadline passes during its retry backoff is not retried', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'dot' ? { reply: '451 4.3.0 try later' } : undefined) },
    { WORKERS: '1', SEND_MAX_ATTEMPTS: '5', SMTP_BACKOFF_BASE_MS: '400', SMTP_BACKOFF_MAX_MS: '400' },
  );
  const err = await expectGrpcError(sendMail(svc, mail('deadline-in-backoff'), { deadline: Date.now() + 150 }));
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
  await sleep(500);
  assert.equal(peer.count('DATA'), 1, 'no attempt after the caller had gone');
  noViolations(peer);
});

test('idempotency: a repeat returns the first result without resending; a concurrent repeat waits for it', async (t) => {
  let now = Date.now();
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' ? { delay: 1500 } : undefined) }, { WORKERS: '2', IDEMPOTENCY_WINDOW_SECONDS: '2', SMTP_DATA_TIMEOUT_MS: '5000' }, { clock: () => now });
  const req = { ...mail('idem'), idempotency_key: 'order-42-confirmation' };
  // Two calls at once: the second waits for the first's outcome.
  const [a, b] = await Promise.all([sendMail(svc, req), sendMail(svc, req)]);
  assert.equal(a.message_id, b.message_id);
  assert.equal(a.smtp_response, b.smtp_response);
  // A later repeat inside the window: the first result, at once.
  const started = Date.now();
  const c = await sendMail(svc, req);
  assert.ok(Date.now() - started < 1000, 'answered from memory, not after another 1.5 s DATA');
  assert.equal(c.message_id, a.message_id);
  assert.equal(peer.withSubject(req.subject).length, 1, 'sent once');

  // The same key for a different message is refused.
  const err = await expectGrpcError(sendMail(svc, { ...req, body: 'something else' }));
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.match(err.details, /idempotency_key/);

  // After the window (2 s from the first call) the key is free again.
  now += 2000;
  const d = await sendMail(svc, req);
  assert.notEqual(d.message_id, a.message_id);
  assert.equal(peer.withSubject(req.subject).length, 2);
  noViolations(peer);
});

test('idempotency: a send that failed is forgotten, so a retry with the same key really retries', async (t) => {
  let refuse = true;
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' && refuse ? { reply: '554 5.7.1 rejected' } : undefined) }, { WORKERS: '1' });
  const req = { ...mail('idem-retry'), idempotency_key: 'k-retry' };
  assert.equal((await expectGrpcError(sendMail(svc, req))).code, grpc.status.FAILED_PRECONDITION);
  refuse = false;
  assert.equal((await sendMail(svc, req)).status, 'SUCCESS');
  assert.equal(peer.withSubject(req.subject).length, 1);
  noViolations(peer);
});
