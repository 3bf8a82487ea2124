// A relay without PIPELINING gets one command at a time, and the faults of
// the pipelined suites count and read the same on this path: once the relay
// has answered MAIL a loss is an attempt; a drop after the final dot is the
// ambiguous case, said as such and never sent more than SEND_MAX_ATTEMPTS
// times; 4xx is retried, 5xx fails at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, sendMail, startRig, waitForPool } from './helpers.js';
import type { FaultPeer, Script } from './fault-peer.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

const stepwise = (script?: Script) => ({ pipelining: false, ...(script === undefined ? {} : { script }) });

test('without PIPELINING: one command at a time, and a burst arrives exactly once', async (t) => {
  const { peer, svc } = await startRig(t, stepwise(), { WORKERS: '2' });
  const reqs = Array.from({ length: 20 }, (_, i) => mail(`step-${i}`));
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  for (const r of reqs) assert.equal(peer.withSubject(r.subject).length, 1, r.subject);
  noViolations(peer);
});

test('a drop after every final dot: at most SEND_MAX_ATTEMPTS copies reach the relay, and the error says the message may have been delivered', async (t) => {
  for (const attempts of [3, 1]) {
    const { peer, svc } = await startRig(t, stepwise((c) => (c.stage === 'dot' ? { drop: true } : undefined)), { WORKERS: '2', SEND_MAX_ATTEMPTS: String(attempts) });
    const req = mail(`dot-drop-${attempts}`);
    const err = await expectGrpcError(sendMail(svc, req));
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.equal(peer.withSubject(req.subject).length, attempts, `SEND_MAX_ATTEMPTS=${attempts}: copies the relay kept`);
    assert.equal(peer.ambiguous, attempts);
    assert.match(err.details, /after the message was sent, before the relay confirmed it/);
    assert.doesNotMatch(err.details, /before the relay answered MAIL/);
    assert.deepEqual(err.metadata.get('mailroom-error'), ['ECONNECTION']);
    noViolations(peer);
  }
});

test('a drop after the final dot once: retried, delivered, the duplicate counted', async (t) => {
  const { peer, svc } = await startRig(t, stepwise((c) => (c.stage === 'dot' && c.conn === 1 ? { drop: true } : undefined)), { WORKERS: '1' });
  const req = mail('dot-once');
  const res = await sendMail(svc, req);
  assert.equal(res.status, 'SUCCESS');
  assert.equal(peer.withSubject(req.subject).length, 2);
  assert.equal(peer.ambiguous, 1);
  noViolations(peer);
});

test('a drop mid-DATA: retried on a fresh connection, arrives once; on every attempt: UNAVAILABLE after SEND_MAX_ATTEMPTS', async (t) => {
  const once = await startRig(t, stepwise((c) => (c.stage === 'body' && c.conn === 1 ? { drop: true } : undefined)), { WORKERS: '1' });
  const req = mail('mid-data');
  assert.equal((await sendMail(once.svc, req)).status, 'SUCCESS');
  assert.equal(once.peer.withSubject(req.subject).length, 1);
  noViolations(once.peer);

  const always = await startRig(t, stepwise((c) => (c.stage === 'body' ? { drop: true } : undefined)), { WORKERS: '2', SEND_MAX_ATTEMPTS: '3' });
  const err = await expectGrpcError(sendMail(always.svc, mail('mid-data-always')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.equal(always.peer.count('DATA'), 3, 'three attempts, no more');
  assert.equal(always.peer.messages.length, 0);
  noViolations(always.peer);
});

test('a drop before MAIL is answered costs no attempt; after it, one', async (t) => {
  const { peer, svc } = await startRig(
    t,
    stepwise((c) => (c.stage === 'MAIL' && c.conn === 1 ? { drop: true } : c.stage === 'RCPT' && c.conn === 2 ? { drop: true } : undefined)),
    { WORKERS: '1', SEND_MAX_ATTEMPTS: '1' },
  );
  // Conn 1 drops at MAIL (free requeue); conn 2 drops at RCPT after MAIL's 250 (the one attempt allowed).
  const err = await expectGrpcError(sendMail(svc, mail('rcpt-drop')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.equal(peer.count('MAIL'), 2);
  assert.equal(peer.count('RCPT'), 1);
  // The relay answered MAIL: a lost connection, not a stale one that saw nothing.
  assert.deepEqual(err.metadata.get('mailroom-error'), ['ECONNECTION']);
  assert.doesNotMatch(err.details, /before the relay answered MAIL/);
  noViolations(peer);
});

test('451 to the final dot is retried on the same session path; 554 fails at once as FAILED_PRECONDITION', async (t) => {
  let first451 = true;
  const transient = await startRig(
    t,
    stepwise((c) => {
      if (c.stage !== 'dot' || !first451) return undefined;
      first451 = false;
      return { reply: '451 4.3.0 try again' };
    }),
    { WORKERS: '2' },
  );
  await waitForPool(transient.svc);
  const req = mail('step-451');
  assert.equal((await sendMail(transient.svc, req)).status, 'SUCCESS');
  assert.equal(transient.peer.withSubject(req.subject).length, 1);
  noViolations(transient.peer);

  const permanent = await startRig(t, stepwise((c) => (c.stage === 'dot' ? { reply: '554 5.7.1 rejected' } : undefined)), { WORKERS: '1' });
  const err = await expectGrpcError(sendMail(permanent.svc, mail('step-554')));
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.match(err.details, /554 5\.7\.1 rejected/);
  assert.equal(permanent.peer.count('DATA'), 1, 'not retried');
  // The session is still good: RSET closed nothing open (the dot ended the transaction), the next mail goes through.
  permanent.peer.script = undefined;
  assert.equal((await sendMail(permanent.svc, mail('after-554'))).status, 'SUCCESS');
  noViolations(permanent.peer);
});
