// CHUNKING (RFC 3030) with PIPELINING: single-recipient messages go whole
// (MAIL, RCPT, BDAT <size> LAST and the content in one write), up to
// SMTP_PIPELINE_DEPTH in flight on a connection; each reply group is its own
// message's outcome; faults mid-chunk, 4xx and 5xx to BDAT LAST, drops with
// several in flight, and relays that close after N messages are survived.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, sendMail, startRig } from './helpers.js';
import type { FaultPeer } from './fault-peer.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

test('whole messages as BDAT LAST, four in flight on one connection, each outcome its own', async (t) => {
  // Every reply to a complete message comes 150 ms late: what the client sends meanwhile shows its depth.
  const { peer, svc } = await startRig(t, { chunking: true, script: (c) => (c.stage === 'dot' ? { delay: 150 } : undefined) }, { WORKERS: '1' });
  await sendMail(svc, mail('first')); // a session carries one message before it pipelines
  const reqs = Array.from({ length: 8 }, (_, i) => mail(`bdat-${i}`));
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
  assert.equal(peer.count('DATA'), 0, 'no DATA: the relay offers CHUNKING');
  assert.equal(peer.count('BDAT'), 9);
  for (const [i, r] of results.entries()) {
    const got = peer.withSubject((reqs[i] as { subject: string }).subject);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.messageId, r.message_id, 'each call got its own message\'s reply');
    assert.match(r.smtp_response, /^250 2\.0\.0 Ok: queued as m\d+$/);
  }
  // Four BDATs arrived within the first held reply's 150 ms: four in flight.
  const bdats = peer.commands.filter((c) => c.verb === 'BDAT').slice(1, 5);
  const spread = (bdats[3]?.arrivedAt ?? 0) - (bdats[0]?.arrivedAt ?? 0);
  assert.ok(spread < 120, `the 2nd to 5th BDAT arrived within ${spread} ms of each other`);
  noViolations(peer);
});

test('a 5xx to one BDAT LAST fails that message only; a 4xx is retried', async (t) => {
  let n = 0;
  const { peer, svc } = await startRig(
    t,
    {
      chunking: true,
      script: (c) => {
        if (c.stage !== 'dot') return undefined;
        n++;
        if (n === 3) return { reply: '554 5.7.1 rejected as spam' };
        if (n === 5) return { reply: '451 4.3.0 try again later' };
        return { delay: 30 };
      },
    },
    { WORKERS: '1', SMTP_BACKOFF_BASE_MS: '10', SMTP_BACKOFF_MAX_MS: '20' },
  );
  await sendMail(svc, mail('warm'));
  const reqs = Array.from({ length: 6 }, (_, i) => mail(`mixed-${i}`));
  const outcomes = await Promise.all(reqs.map((r) => sendMail(svc, r).then((res) => res.status, (e: grpc.ServiceError) => e)));
  const refused = outcomes.filter((o): o is grpc.ServiceError => typeof o !== 'string');
  assert.equal(refused.length, 1, 'one message refused');
  assert.equal(refused[0]?.code, grpc.status.FAILED_PRECONDITION);
  assert.deepEqual(refused[0]?.metadata.get('smtp-code'), ['554']);
  assert.equal(outcomes.filter((o) => o === 'SUCCESS').length, 5, 'the others, the 451 one after a retry, went through');
  for (const r of reqs) assert.ok(peer.withSubject(r.subject).length <= 1, 'nothing twice');
  noViolations(peer);
});

test('a drop mid-chunk, and one after BDAT LAST with several in flight: each message goes out, duplicates only where ambiguous', async (t) => {
  let dropped = 0;
  const { peer, svc } = await startRig(
    t,
    {
      chunking: true,
      script: (c) => {
        if (c.conn === 1 && c.stage === 'body' && c.seen === 3 && dropped++ === 0) return { drop: true };
        if (c.conn === 2 && c.stage === 'dot' && c.seen === 2) return { drop: true };
        return c.stage === 'dot' ? { delay: 20 } : undefined;
      },
    },
    { WORKERS: '1', SMTP_BACKOFF_BASE_MS: '10', SMTP_BACKOFF_MAX_MS: '20' },
  );
  await sendMail(svc, mail('warm'));
  const reqs = Array.from({ length: 10 }, (_, i) => mail(`drop-${i}`));
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  let duplicates = 0;
  for (const r of reqs) {
    const copies = peer.withSubject(r.subject).length;
    assert.ok(copies >= 1, `${r.subject} arrived`);
    duplicates += copies - 1;
  }
  assert.ok(peer.connections.length >= 3, 'two drops, three connections');
  assert.ok(duplicates <= peer.ambiguous, `${duplicates} duplicates, ${peer.ambiguous} ambiguous`);
  noViolations(peer);
});

test('a relay that closes after every two messages: every message delivered exactly once', async (t) => {
  const { peer, svc } = await startRig(
    t,
    {
      chunking: true,
      script: (c) => (c.stage === 'dot' && c.accepted === 1 ? { reply: '250 2.0.0 Ok: queued, and goodbye', close: true } : undefined),
    },
    { WORKERS: '2', SMTP_BACKOFF_BASE_MS: '5', SMTP_BACKOFF_MAX_MS: '10' },
  );
  const reqs = Array.from({ length: 30 }, (_, i) => mail(`closer-${i}`));
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  for (const r of reqs) assert.equal(peer.withSubject(r.subject).length, 1, r.subject);
  assert.ok(peer.connections.length >= 15);
  noViolations(peer);
});

test('a message of several recipients takes the DATA path, so that a refused one stops its content', async (t) => {
  const { peer, svc } = await startRig(t, { chunking: true, script: (c) => (c.stage === 'RCPT' && c.arg.includes('nobody@') ? { reply: '550 5.1.1 no such user' } : undefined) }, { WORKERS: '1' });
  await sendMail(svc, mail('warm'));
  const ok = await sendMail(svc, { ...mail('two'), to: 'a@example.com, b@example.com' });
  assert.equal(ok.status, 'SUCCESS');
  const refused = { ...mail('refused'), to: 'a@example.com, nobody@example.com' };
  const err = await expectGrpcError(sendMail(svc, refused));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(peer.count('DATA'), 2, 'both multi-recipient messages used DATA');
  assert.equal(peer.withSubject(refused.subject).length, 0, 'no partial delivery');
  noViolations(peer);
});
