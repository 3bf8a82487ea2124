// Retry classification (RFC 5321): 4xx replies and lost connections are
// retried on another connection up to SEND_MAX_ATTEMPTS with backoff; 5xx
// fails at once with the SMTP code and text in the gRPC error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, sendMail, startRig, waitForPool } from './helpers.js';
import type { Fault, FaultContext, FaultPeer, Stage } from './fault-peer.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

/** A script that faults `stage` the first `times` times it is seen overall. */
function firstTimes(stage: Stage, times: number, fault: Fault): (c: FaultContext) => Fault | undefined {
  let left = times;
  return (c) => {
    if (c.stage !== stage || left === 0) return undefined;
    left -= 1;
    return fault;
  };
}

for (const [label, stage, fault] of [
  ['451 to the final dot', 'dot', { reply: '451 4.3.0 Temporary local problem, try again' }],
  ['452 to RCPT', 'RCPT', { reply: '452 4.2.2 Mailbox full, try later' }],
  ['450 to MAIL', 'MAIL', { reply: '450 4.7.1 Greylisted, come back later' }],
  ['421 to DATA, then the relay closes', 'DATA', { reply: '421 4.3.2 Service shutting down', close: true }],
] as const) {
  test(`${label}: transient, retried on another connection, delivered once`, async (t) => {
    const { peer, svc } = await startRig(t, { script: firstTimes(stage, 1, fault) }, { WORKERS: '2' });
    await waitForPool(svc);
    const req = mail(stage);
    const res = await sendMail(svc, req);
    assert.equal(res.status, 'SUCCESS');
    const got = peer.withSubject(req.subject);
    assert.equal(got.length, 1);
    const first = peer.commands.find((c) => c.verb === 'MAIL');
    assert.notEqual(got[0]?.conn, first?.conn, 'the retry went to another connection');
    noViolations(peer);
  });
}

test('transient failures are retried up to SEND_MAX_ATTEMPTS with backoff, then UNAVAILABLE with the reply', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'dot' ? { reply: '451 4.3.0 Queue full, try later' } : undefined) },
    { WORKERS: '2', SEND_MAX_ATTEMPTS: '4', SMTP_BACKOFF_BASE_MS: '40', SMTP_BACKOFF_MAX_MS: '1000' },
  );
  const err = await expectGrpcError(sendMail(svc, mail('always-451')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, /451 4\.3\.0 Queue full, try later/);
  assert.deepEqual(err.metadata.get('smtp-code'), ['451']);
  assert.deepEqual(err.metadata.get('smtp-enhanced-code'), ['4.3.0']);
  const datas = peer.commands.filter((c) => c.verb === 'DATA');
  assert.equal(datas.length, 4, 'exactly SEND_MAX_ATTEMPTS attempts');
  for (let i = 1; i < datas.length; i++) {
    const gap = (datas[i]?.at ?? 0) - (datas[i - 1]?.at ?? 0);
    const min = Math.min(1000, 40 * 2 ** (i - 1)) / 2;
    assert.ok(gap >= min - 2, `retry ${i} waited ${gap} ms (at least ${min})`);
  }
  assert.equal(peer.messages.length, 0);
  assert.equal(peer.connections.length, 2, '4xx replies do not cost the connection');
  noViolations(peer);
});

test('a connection lost on every attempt: UNAVAILABLE after SEND_MAX_ATTEMPTS, nothing delivered', async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'body' ? { drop: true } : undefined) }, { WORKERS: '2', SEND_MAX_ATTEMPTS: '3' });
  const err = await expectGrpcError(sendMail(svc, mail('always-lost')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.equal(peer.count('DATA'), 3);
  assert.equal(peer.messages.length, 0);
  noViolations(peer);
});

test('550 to RCPT fails at once as INVALID_ARGUMENT with the reply; the connection RSETs and carries on', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'RCPT' && c.arg.includes('nobody@') ? { reply: '550 5.1.1 <nobody@example.com>: Recipient address rejected' } : undefined) },
    { WORKERS: '1' },
  );
  const err = await expectGrpcError(sendMail(svc, { ...mail('refused'), to: 'nobody@example.com' }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /550 5\.1\.1 <nobody@example\.com>: Recipient address rejected/);
  assert.deepEqual(err.metadata.get('smtp-code'), ['550']);
  assert.equal(peer.count('RCPT'), 1, 'a permanent refusal is not retried');
  assert.equal(peer.count('RSET'), 1, 'the half-open transaction was reset');
  const res = await sendMail(svc, mail('next'));
  assert.equal(res.status, 'SUCCESS');
  assert.equal(peer.connections.length, 1, 'a refusal does not cost the connection');
  noViolations(peer);
});

for (const [label, stage, reply] of [
  ['554 to the final dot', 'dot', '554 5.7.1 Message rejected as spam'],
  ['552 to MAIL', 'MAIL', '552 5.3.4 Message size exceeds fixed limit'],
  ['554 to DATA', 'DATA', '554 5.5.1 Error: no valid recipients'],
] as const) {
  test(`${label} fails at once as FAILED_PRECONDITION with the reply`, async (t) => {
    const { peer, svc } = await startRig(t, { script: firstTimes(stage, 1, { reply }) }, { WORKERS: '2' });
    const started = Date.now();
    const err = await expectGrpcError(sendMail(svc, mail(stage)));
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.ok(err.details.includes(reply), err.details);
    assert.ok(Date.now() - started < 500, 'no retry, no backoff');
    assert.equal(peer.count('MAIL'), 1);
    assert.equal(peer.messages.length, 0);
    assert.equal((await sendMail(svc, mail('after'))).status, 'SUCCESS');
    noViolations(peer);
  });
}

test('a 421 greeting is transient: the pool dials again and comes up', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'connect' && c.conn <= 2 ? { reply: '421 4.3.2 Too busy, try later', close: true } : undefined) },
    { WORKERS: '1' },
  );
  const res = await sendMail(svc, mail('after-421-greeting'));
  assert.equal(res.status, 'SUCCESS');
  assert.equal(peer.messages[0]?.conn, 3);
  noViolations(peer);
});

test('421 mid-session (the relay closes): the job is retried, the connection redials without RSET', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: firstTimes('RCPT', 1, { reply: '421 4.4.2 Connection timed out, closing', close: true }) },
    { WORKERS: '1' },
  );
  const req = mail('421-mid-session');
  assert.equal((await sendMail(svc, req)).status, 'SUCCESS');
  assert.equal(peer.withSubject(req.subject).length, 1);
  assert.equal(peer.count('RSET'), 0, 'no RSET into a channel the relay closed');
  assert.equal(peer.connections.length, 2);
  noViolations(peer);
});
