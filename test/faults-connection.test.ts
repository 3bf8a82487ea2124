// The connection under faults: drops at every stage, backoff, keepalive,
// recycling, a relay that answers nothing, bad credentials, TCP resets.
// Every test goes through the real gRPC API to a scriptable fault peer and
// asserts what the peer received.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, faultEnv, mail, recordingLogger, relayEnv, sendMail, sleep, startRig, startService, startSmtp, testPki, waitForPool } from './helpers.js';
import { startBlackhole, type FaultPeer, type Stage } from './fault-peer.js';
import type { LogEntry } from './helpers.js';

function noViolations(peer: FaultPeer): void {
  assert.deepEqual(peer.violations, [], 'the client broke no protocol rule');
}

/** exponential backoff's lower bound for `attempt` with equal jitter */
function minBackoff(attempt: number, base: number, max: number): number {
  return Math.min(max, base * 2 ** (attempt - 1)) / 2;
}

test('a failing dial is retried with exponential backoff until the relay answers', async (t) => {
  // The first five connections are dropped at EHLO; the sixth works.
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'EHLO' && c.conn <= 5 ? { drop: true } : undefined) }, {
    WORKERS: '1',
    SMTP_BACKOFF_BASE_MS: '20',
    SMTP_BACKOFF_MAX_MS: '1000',
  });
  const res = await sendMail(svc, mail('after-backoff'));
  assert.equal(res.status, 'SUCCESS');
  assert.equal(peer.connections.length, 6);
  const opened = peer.connections.map((c) => c.openedAt);
  for (let attempt = 1; attempt <= 5; attempt++) {
    const gap = (opened[attempt] as number) - (opened[attempt - 1] as number);
    assert.ok(gap >= minBackoff(attempt, 20, 1000) - 2, `dial ${attempt + 1} waited ${gap} ms, at least ${minBackoff(attempt, 20, 1000)} expected`);
  }
  assert.equal(peer.messages.length, 1);
  assert.equal(peer.messages[0]?.conn, 6);
  noViolations(peer);
});

test('a connection dropped between jobs reconnects and the next job goes through', async (t) => {
  const { peer, svc } = await startRig(t, {}, { WORKERS: '1' });
  await sendMail(svc, mail('before-drop'));
  peer.dropAll();
  await peer.until(() => peer.connections.length === 2, 2000, 'a second connection');
  const res = await sendMail(svc, mail('after-drop'));
  assert.equal(res.status, 'SUCCESS');
  assert.deepEqual(
    peer.messages.map((m) => m.conn),
    [1, 2],
  );
  noViolations(peer);
});

for (const [where, stage] of [
  ['on MAIL', 'MAIL'],
  ['on RCPT', 'RCPT'],
  ['on DATA', 'DATA'],
  ['mid-DATA', 'body'],
] as const) {
  test(`a connection dropped ${where} is retried on a fresh connection and the message arrives once`, async (t) => {
    const { peer, svc } = await startRig(t, { script: (c) => (c.stage === stage && c.conn === 1 ? { drop: true } : undefined) }, { WORKERS: '1' });
    const req = mail(stage);
    const res = await sendMail(svc, req);
    assert.equal(res.status, 'SUCCESS');
    const got = peer.withSubject(req.subject);
    assert.equal(got.length, 1, 'exactly one copy');
    assert.equal(got[0]?.messageId, res.message_id);
    assert.equal(got[0]?.conn, 2);
    noViolations(peer);
  });
}

test('a drop after the final dot is the one ambiguous case: the retry makes a duplicate, counted', async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' && c.conn === 1 ? { drop: true } : undefined) }, { WORKERS: '1' });
  const req = mail('ambiguous');
  const res = await sendMail(svc, req);
  assert.equal(res.status, 'SUCCESS');
  const got = peer.withSubject(req.subject);
  assert.equal(got.length, 2, 'the peer kept the first copy, the retry sent a second');
  assert.ok(got.every((m) => m.messageId === res.message_id), 'both carry the same Message-ID, so a relay can deduplicate');
  assert.equal(peer.ambiguous, 1);
  noViolations(peer);
});

test('drops during STARTTLS and during AUTH: reconnect, never a job on an unauthenticated or plain connection', async (t) => {
  const pki = testPki();
  const auth = { user: 'mailer', pass: 'secret-pass' };
  let faulty = false;
  const { peer, svc } = await startRig(
    t,
    {
      tls: pki.server,
      auth,
      script: (c) => {
        if (!faulty) return undefined;
        // connection n+1: dropped right after 220 to STARTTLS (mid-handshake);
        // n+2: TCP reset on AUTH; n+3: AUTH stalls past the command timeout.
        if (c.stage === 'STARTTLS' && c.conn === 2) return { reply: '220 2.0.0 Ready to start TLS', close: true };
        if (c.stage === 'AUTH' && c.conn === 3) return { drop: true, reset: true };
        if (c.stage === 'AUTH' && c.conn === 4) return { stall: true };
        // n+4: says 220 to STARTTLS, then never answers the TLS handshake.
        if (c.stage === 'STARTTLS' && c.conn === 5) return { reply: '220 2.0.0 Ready to start TLS', stall: true };
        return undefined;
      },
    },
    {
      WORKERS: '1',
      EMAIL_TLS: 'starttls',
      EMAIL_CA_FILE: pki.caFile,
      EMAIL: auth.user,
      APP_PASSWORD: auth.pass,
      SMTP_COMMAND_TIMEOUT_MS: '200',
      SMTP_CONNECT_TIMEOUT_MS: '200',
    },
  );
  faulty = true;
  peer.dropAll();
  // Jobs queued while the connection fights its way up wait for it.
  const reqs = [mail('tls-auth-1'), mail('tls-auth-2'), mail('tls-auth-3')];
  const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  assert.equal(peer.connections.length, 6);
  assert.equal(peer.messages.length, 3);
  for (const m of peer.messages) {
    const conn = peer.connections[m.conn - 1];
    assert.ok(conn?.tls && conn.authed, `message on connection ${m.conn} went over TLS after AUTH`);
  }
  noViolations(peer);
});

test('a relay that refuses TLS gets no mail in plain text; the call fails UNAVAILABLE, then works once TLS is back', async (t) => {
  const pki = testPki();
  let refuse = true;
  const { peer, svc } = await startRig(
    t,
    { tls: pki.server, script: (c) => (refuse && c.stage === 'STARTTLS' ? { reply: '454 4.7.0 TLS not available due to local problem' } : undefined) },
    { WORKERS: '1', EMAIL_TLS: 'starttls', EMAIL_CA_FILE: pki.caFile, QUEUE_TIMEOUT_MS: '400' },
  );
  const err = await expectGrpcError(sendMail(svc, mail('no-tls')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, /454/, 'the reason reaches the caller');
  assert.equal(peer.count('MAIL'), 0, 'nothing was sent in plain text');
  assert.ok(peer.connections.length >= 2, 'the connection kept trying');
  refuse = false;
  await waitForPool(svc);
  assert.equal((await sendMail(svc, mail('tls-back'))).status, 'SUCCESS');
  assert.ok(peer.connections[(peer.messages[0]?.conn ?? 0) - 1]?.tls);
  noViolations(peer);
});

test('keepalive: NOOP at the configured idle interval; a failed NOOP means reconnect', async (t) => {
  let noopFault: 'none' | 'close' | 'stall' = 'none';
  const { peer, svc } = await startRig(
    t,
    {
      script: (c) => {
        if (c.stage !== 'NOOP' || noopFault === 'none') return undefined;
        const fault = noopFault;
        noopFault = 'none';
        return fault === 'close' ? { reply: '421 4.4.2 idle too long, closing', close: true } : { stall: true };
      },
    },
    { WORKERS: '1', SMTP_KEEPALIVE_MS: '60', SMTP_COMMAND_TIMEOUT_MS: '150' },
  );
  await peer.until(() => peer.count('NOOP') >= 4, 2000, '4 NOOPs');
  const noops = peer.commands.filter((c) => c.verb === 'NOOP').map((c) => c.at);
  for (let i = 1; i < noops.length; i++) {
    const gap = (noops[i] as number) - (noops[i - 1] as number);
    assert.ok(gap >= 55, `NOOPs ${gap} ms apart, the interval is 60 ms`);
  }
  assert.equal(peer.connections.length, 1, 'NOOPs keep the one connection');

  noopFault = 'close';
  await peer.until(() => peer.connections.length === 2, 2000, 'a reconnect after a 421 to NOOP');
  noopFault = 'stall';
  await peer.until(() => peer.connections.length === 3, 2000, 'a reconnect after a NOOP timed out');
  assert.ok(peer.connections[1]?.closedAt !== undefined, 'the stalled connection was dropped');
  const res = await sendMail(svc, mail('after-keepalive'));
  assert.equal(res.status, 'SUCCESS');
  assert.equal(peer.messages[0]?.conn, 3);
  noViolations(peer);
});

test('a job that arrives while the connection is in its NOOP waits for it, not bounced or lost', async (t) => {
  // NOOP every 10 ms, each answered 5 ms late: most jobs land mid-NOOP.
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'NOOP' ? { delay: 5 } : undefined) }, { WORKERS: '2', SMTP_KEEPALIVE_MS: '10' });
  const reqs: ReturnType<typeof mail>[] = [];
  for (let i = 0; i < 40; i++) {
    const req = mail('mid-noop');
    reqs.push(req);
    assert.equal((await sendMail(svc, req)).status, 'SUCCESS');
    await sleep(i % 7);
  }
  assert.ok(peer.count('NOOP') >= 3, `the keepalive ran meanwhile (${peer.count('NOOP')} NOOPs)`);
  for (const req of reqs) assert.equal(peer.withSubject(req.subject).length, 1);
  assert.equal(peer.connections.length, 2);
  noViolations(peer);
});

for (const n of [1, 3]) {
  test(`a relay that closes the connection after every ${n} message(s): each job is delivered exactly once`, async (t) => {
    // The close races the next job: the supervisor may hand a job to a
    // connection whose socket is already gone; it must come back exactly once.
    const { peer, svc } = await startRig(
      t,
      { script: (c) => (c.stage === 'dot' && c.accepted + 1 >= n ? { reply: '250 2.0.0 Ok, and goodbye', close: true } : undefined) },
      { WORKERS: '2', SMTP_BACKOFF_BASE_MS: '1', SMTP_BACKOFF_MAX_MS: '5' },
    );
    const reqs = Array.from({ length: 60 }, (_, i) => mail(`close-after-${n}-${i}`));
    const results = await Promise.all(reqs.map((r) => sendMail(svc, r)));
    assert.ok(results.every((r) => r.status === 'SUCCESS'));
    for (const req of reqs) assert.equal(peer.withSubject(req.subject).length, 1, `${req.subject} arrived once`);
    assert.equal(peer.messages.length, 60);
    assert.ok(peer.connections.every((c) => c.accepted <= n));
    noViolations(peer);
  });
}

test('recycling: after SMTP_MAX_MESSAGES_PER_CONNECTION the connection says QUIT and dials afresh, no job fails', async (t) => {
  const { logger, entries } = recordingLogger('debug');
  const { peer, svc } = await startRig(t, {}, { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '3' }, { log: logger });
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => sendMail(svc, mail(`recycle-${i}`))));
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  assert.equal(peer.messages.length, 10);
  assert.deepEqual(
    peer.connections.slice(0, 4).map((c) => c.accepted),
    [3, 3, 3, 1],
  );
  assert.deepEqual(
    peer.connections.slice(0, 3).map((c) => c.quit),
    [true, true, true],
    'each spent connection said QUIT',
  );
  assert.equal(entries.filter((e) => e.level === 'warn' || e.level === 'error').length, 0, 'recycling is routine: no warning');
  assert.ok(entries.some((e) => e.message === 'recycling' && e.level === 'debug'));
  noViolations(peer);
});

test('a relay that answers nothing: greeting, command and DATA timeouts count as a lost connection', async (t) => {
  let fault: Stage | undefined;
  const { peer, svc } = await startRig(
    t,
    {
      script: (c) => {
        if (c.stage !== fault) return undefined;
        fault = undefined;
        return { stall: true };
      },
    },
    { WORKERS: '1', SMTP_GREETING_TIMEOUT_MS: '150', SMTP_COMMAND_TIMEOUT_MS: '100', SMTP_DATA_TIMEOUT_MS: '400' },
  );
  // Greeting: the next connection says nothing after accept.
  fault = 'connect';
  peer.dropAll();
  await peer.until(() => peer.connections.length === 3, 2000, 'a dial after the silent greeting');
  assert.ok((peer.connections[1]?.closedAt ?? 0) - (peer.connections[1]?.openedAt ?? 0) >= 140, 'gave up after the greeting timeout');
  await waitForPool(svc);

  // A command: MAIL gets no answer within 100 ms.
  fault = 'MAIL';
  let started = Date.now();
  assert.equal((await sendMail(svc, mail('command-timeout'))).status, 'SUCCESS');
  let took = Date.now() - started;
  assert.ok(took >= 100 && took < 1000, `MAIL timed out after the command timeout (${took} ms)`);

  // DATA: the peer stops reading mid-message; the DATA timeout (not the command timeout) applies.
  fault = 'body';
  started = Date.now();
  const req = mail('data-timeout');
  assert.equal((await sendMail(svc, req)).status, 'SUCCESS');
  took = Date.now() - started;
  assert.ok(took >= 400, `the message data had its own, longer deadline (${took} ms)`);
  assert.equal(peer.withSubject(req.subject).length, 1);
  assert.equal(peer.connections.length, 5);
  noViolations(peer);
});

test('AUTH 535 is not hammered: the connection waits the backoff cap, the pool health is logged once per change', async (t) => {
  const { logger, entries } = recordingLogger('info');
  let refuse = true;
  const auth = { user: 'mailer', pass: 'right' };
  const { peer, svc } = await startRig(
    t,
    { auth, script: (c) => (refuse && c.stage === 'AUTH' ? { reply: '535 5.7.8 Error: authentication failed' } : undefined) },
    { WORKERS: '2', EMAIL: auth.user, APP_PASSWORD: auth.pass, SMTP_BACKOFF_BASE_MS: '5', SMTP_BACKOFF_MAX_MS: '300', QUEUE_TIMEOUT_MS: '600' },
    { log: logger },
  );
  // boot() already waited for the pool (connect + greeting timeout) and gave up.
  const err = await expectGrpcError(sendMail(svc, mail('bad-credentials')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, /535/, 'the caller learns why');
  // Two workers, each waiting at least half the 300 ms cap between dials
  // (equal jitter): a hammering loop would have made dozens of attempts.
  const auths = peer.commands.filter((c) => c.verb === 'AUTH');
  const elapsed = (auths.at(-1)?.at ?? 0) - (auths[0]?.at ?? 0);
  assert.ok(auths.length <= 2 * (Math.floor(elapsed / 150) + 1), `${auths.length} AUTH attempts in ${elapsed} ms: backed off`);
  const down = entries.filter((e) => e.level === 'error' && e.message === 'pool down: no SMTP connection is up');
  assert.ok(down.length <= 1, 'pool down is logged once, not per attempt');

  refuse = false;
  await waitForPool(svc);
  assert.equal((await sendMail(svc, mail('good-credentials'))).status, 'SUCCESS');
  assert.ok(entries.some((e) => e.level === 'info' && e.message === 'pool up' && e.up === 2));
  noViolations(peer);
});

test('TCP resets at every stage of the dialogue crash nothing: each ends in a reconnect', async (t) => {
  let resetAt: Stage | undefined;
  const { peer, svc } = await startRig(
    t,
    {
      script: (c) => {
        if (c.stage === 'RCPT' && c.arg.includes('refused@')) return { reply: '550 5.1.1 no such user' };
        if (c.stage !== resetAt) return undefined;
        resetAt = undefined;
        return { drop: true, reset: true };
      },
    },
    { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '1000', SMTP_KEEPALIVE_MS: '60000' },
  );
  const stages: Stage[] = ['connect', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'body', 'dot'];
  for (const stage of stages) {
    const conns = peer.connections.length;
    resetAt = stage;
    if (stage === 'connect' || stage === 'EHLO') {
      peer.dropAll();
      await peer.until(() => peer.connections.length >= conns + 2, 2000, `a reconnect after a reset on ${stage}`);
    }
    const req = mail(`reset-${stage}`);
    assert.equal((await sendMail(svc, req)).status, 'SUCCESS', stage);
    assert.ok(peer.withSubject(req.subject).length >= 1, stage);
  }
  // RSET: a refused recipient makes the connection RSET, which is reset.
  resetAt = 'RSET';
  const refused = await expectGrpcError(sendMail(svc, { ...mail('refused'), to: 'refused@example.com' }));
  assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await sendMail(svc, mail('after-rset-reset'))).status, 'SUCCESS');
  noViolations(peer);
});

test('implicit TLS: the connect deadline ends at the TCP connect, the session outlives it', async (t) => {
  const pki = testPki();
  const smtp = await startSmtp({ secure: pki.server });
  const svc = await startService(
    relayEnv(smtp.port, { WORKERS: '1', EMAIL_TLS: 'implicit', EMAIL_CA_FILE: pki.caFile, SMTP_CONNECT_TIMEOUT_MS: '400', SMTP_KEEPALIVE_MS: '60000' }),
  );
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  // Past the connect deadline, which is long enough that a busy machine
  // still connects on loopback within it.
  await sleep(800);
  assert.equal((await sendMail(svc, mail('implicit-tls'))).status, 'SUCCESS');
  assert.equal(smtp.connections.length, 1, 'the one connection lived past the connect deadline');
});

test('pool health in the log: warn per connection down with the reason, error when none is up, info when fully up again', async (t) => {
  const { logger, entries } = recordingLogger('debug');
  let refuse = false;
  const { peer, svc } = await startRig(
    t,
    { script: (c) => (refuse && c.stage === 'connect' ? { reply: '554 5.3.2 not accepting connections', close: true } : undefined) },
    { WORKERS: '2', SMTP_BACKOFF_BASE_MS: '20', SMTP_BACKOFF_MAX_MS: '40' },
    { log: logger },
  );
  await waitForPool(svc);
  const at = (level: string, message: string): LogEntry[] => entries.filter((e) => e.level === level && e.message === message);
  assert.equal(at('info', 'pool up').length, 1, 'fully up once at boot');

  refuse = true;
  peer.dropAll();
  await peer.until(() => peer.connections.length >= 6, 2000, 'redials being refused');
  const down = at('warn', 'SMTP connection down');
  assert.equal(down.length, 1, 'the first connection down is a warning');
  assert.equal(down[0]?.reason, 'the SMTP relay closed the connection');
  const none = at('error', 'pool down: no SMTP connection is up');
  assert.equal(none.length, 1, 'the last one down is an error, logged once however many dials fail');
  assert.equal(none[0]?.up, 0);

  refuse = false;
  await waitForPool(svc);
  assert.equal(at('info', 'pool up').length, 2, 'fully up again');
  assert.equal(entries.filter((e) => e.level === 'warn' || e.level === 'error').length, 2, 'nothing else above info');
});

test('a relay whose TCP connect never completes: the connect timeout fires, the call fails UNAVAILABLE saying so', async (t) => {
  const hole = await startBlackhole();
  t.after(() => hole.close());
  const svc = await startService(
    faultEnv(hole.port, { WORKERS: '1', SMTP_CONNECT_TIMEOUT_MS: '100', SMTP_GREETING_TIMEOUT_MS: '100', QUEUE_TIMEOUT_MS: '500' }),
  );
  t.after(() => svc.close());
  const started = Date.now();
  const err = await expectGrpcError(sendMail(svc, mail('blackhole')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, /no TCP connection to the SMTP relay within 100 ms/);
  assert.ok(Date.now() - started < 2000);
});
