// Pipelining across messages: a busy connection takes a next job and sends
// its MAIL/RCPT/DATA right behind the final dot of the one under way. Faults
// that hit that group (a drop at the next MAIL, a drop or a refusal at the dot
// before it) must neither lose a job nor deliver or report one twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, sendMail, startRig } from './helpers.js';
import type { FaultPeer } from './fault-peer.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

/** 30 sends at once through one connection: after its first message it always holds a next one. */
async function burst(svc: Parameters<typeof sendMail>[0], label: string): Promise<{ subject: string; result: Awaited<ReturnType<typeof sendMail>> | grpc.ServiceError }[]> {
  const reqs = Array.from({ length: 30 }, (_, i) => mail(`${label}-${i}`));
  return Promise.all(reqs.map(async (r) => ({ subject: r.subject, result: await sendMail(svc, r).catch((err: grpc.ServiceError) => err) })));
}

test('back-to-back messages on one connection all arrive exactly once, on that one connection', async (t) => {
  const { peer, svc } = await startRig(t, {}, { WORKERS: '1' });
  const results = await burst(svc, 'b2b');
  for (const { subject, result } of results) {
    assert.equal((result as { status: string }).status, 'SUCCESS', subject);
    assert.equal(peer.withSubject(subject).length, 1, `${subject} arrived once`);
  }
  assert.equal(peer.connections.length, 1, 'no reconnect');
  assert.equal(peer.count('RSET'), 0);
  noViolations(peer);
});

for (const where of ['the next MAIL', 'the dot before it'] as const) {
  // A drop after a dot is SMTP's one ambiguous case (faults-connection): that
  // message's retry makes a counted duplicate. The next job, whose envelope
  // went out behind that dot, must not be touched by it.
  test(`a drop at ${where}: no job is lost, and none but an ambiguous one twice`, async (t) => {
    // The 4th MAIL on the first connection is a next job's, sent behind the 3rd message's dot.
    const { peer, svc } = await startRig(
      t,
      {
        script: (c) => {
          if (c.conn !== 1) return undefined;
          if (where === 'the next MAIL' && c.stage === 'MAIL' && c.seen === 4) return { drop: true };
          if (where === 'the dot before it' && c.stage === 'dot' && c.seen === 3) return { drop: true };
          return undefined;
        },
      },
      { WORKERS: '1' },
    );
    const results = await burst(svc, `drop-${where.replace(/ /g, '-')}`);
    const ambiguous = where === 'the dot before it' ? 1 : 0;
    assert.equal(peer.ambiguous, ambiguous);
    const copies = results.map(({ subject, result }) => {
      assert.equal((result as { status: string }).status, 'SUCCESS', subject);
      return peer.withSubject(subject).length;
    });
    assert.equal(copies.filter((n) => n === 2).length, ambiguous, 'only the message whose dot was dropped went twice');
    assert.equal(copies.filter((n) => n === 1).length, 30 - ambiguous, 'every other one arrived once');
    assert.equal(peer.messages.length, 30 + ambiguous);
    assert.ok(peer.connections.length >= 2, 'the dropped connection was replaced');
    noViolations(peer);
  });
}

test('a refused message with the next envelope behind its dot: only it fails, the next goes out on the same connection', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.conn === 1 && c.stage === 'dot' && c.seen === 3 ? { reply: '554 5.7.1 content rejected' } : undefined) },
    { WORKERS: '1', SEND_MAX_ATTEMPTS: '1' },
  );
  const results = await burst(svc, 'refused-dot');
  const failed = results.filter(({ result }) => result instanceof Error);
  assert.equal(failed.length, 1, 'exactly one message refused');
  const refused = await expectGrpcError(Promise.reject(failed[0]?.result));
  assert.equal(refused.metadata.get('smtp-code')[0], '554');
  for (const { subject, result } of results) {
    if (result instanceof Error) assert.equal(peer.withSubject(subject).length, 0, `${subject} was refused and not delivered`);
    else assert.equal(peer.withSubject(subject).length, 1, `${subject} arrived once`);
  }
  assert.equal(peer.messages.length, 29);
  assert.equal(peer.connections.length, 1, 'the session carried on');
  // After a refusal the connection says RSET unless the next envelope was already out behind that dot.
  assert.equal(peer.count('RSET'), 0, 'the next envelope had gone out behind the refused dot');
  noViolations(peer);
});

test('a next envelope with a refused recipient fails only its message; the session carries on', async (t) => {
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (c.stage === 'RCPT' && c.arg.includes('refused@') ? { reply: '550 5.1.1 no such user' } : undefined) },
    { WORKERS: '1', SEND_MAX_ATTEMPTS: '1' },
  );
  const reqs = Array.from({ length: 20 }, (_, i) => (i === 7 ? { ...mail('rcpt-refused'), to: 'refused@example.com' } : mail(`rcpt-ok-${i}`)));
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r).then(() => 'ok', (err: grpc.ServiceError) => err.code)));
  assert.deepEqual(
    results.map((r, i) => (i === 7 ? r === grpc.status.INVALID_ARGUMENT : r === 'ok')),
    results.map(() => true),
  );
  for (const [i, r] of reqs.entries()) assert.equal(peer.withSubject(r.subject).length, i === 7 ? 0 : 1);
  assert.equal(peer.connections.length, 1, 'the session carried on');
  noViolations(peer);
});

test('a job given while the dot of the message before it awaits its reply sends its envelope at once, not after that reply', async (t) => {
  const HELD_MS = 600;
  const { peer, svc } = await startRig(
    t,
    // The relay sits on its answer to the second message's dot.
    { script: (c) => (c.stage === 'dot' && c.seen === 2 ? { delay: HELD_MS } : undefined) },
    { WORKERS: '1' },
  );
  await sendMail(svc, mail('first')); // a session that has carried a message takes next jobs
  const second = mail('second');
  const third = mail('third');
  const sending = sendMail(svc, second);
  await peer.until(() => peer.withSubject(second.subject).length === 1, 5000, 'the second message at the peer');
  const heldSince = Date.now();
  await Promise.all([sending, sendMail(svc, third)]);
  const mails = peer.commands.filter((c) => c.verb === 'MAIL');
  assert.equal(mails.length, 3);
  const thirdMail = mails[2] as (typeof mails)[number];
  assert.ok(
    thirdMail.arrivedAt - heldSince < HELD_MS - 100,
    `the third envelope arrived ${thirdMail.arrivedAt - heldSince} ms into the ${HELD_MS} ms the relay held its reply to the dot before it`,
  );
  assert.deepEqual([peer.withSubject(second.subject).length, peer.withSubject(third.subject).length], [1, 1]);
  noViolations(peer);
});
