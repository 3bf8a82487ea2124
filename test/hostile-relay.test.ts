// A broken or hostile relay never takes mailroom down: a reply that never
// ends, a line that never ends, a line of a megabyte, an AUTH reply that
// echoes the credential. Each ends that one connection (ECONNECTION, saying
// why); the caller gets UNAVAILABLE; the pool recovers once the relay behaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, mail, recordingLogger, sendMail, startRig, waitForPool } from './helpers.js';
import type { Fault, FaultContext, Stage } from './fault-peer.js';
import { MAX_LINE, MAX_LINES, MAX_PENDING, ReplyReader } from '../src/smtp/reply-reader.js';

const FAST = { WORKERS: '2', SEND_MAX_ATTEMPTS: '2', QUEUE_TIMEOUT_MS: '800', SMTP_BACKOFF_BASE_MS: '20', SMTP_BACKOFF_MAX_MS: '40' };

interface Case {
  readonly name: string;
  readonly stage: Stage;
  readonly fault: Fault;
  readonly why: RegExp;
}

const CASES: Case[] = [
  { name: 'a multi-line greeting that never ends', stage: 'connect', fault: { flood: 'lines', code: '220' }, why: new RegExp(`more than ${MAX_LINES} lines`) },
  { name: 'a multi-line reply to MAIL that never ends', stage: 'MAIL', fault: { flood: 'lines' }, why: new RegExp(`more than ${MAX_LINES} lines`) },
  { name: 'a multi-line reply to the final dot that never ends', stage: 'dot', fault: { flood: 'lines' }, why: new RegExp(`more than ${MAX_LINES} lines`) },
  { name: 'a reply line that never ends', stage: 'MAIL', fault: { flood: 'unterminated' }, why: new RegExp(`line of more than ${MAX_LINE} bytes`) },
  { name: 'a reply line of a megabyte', stage: 'RCPT', fault: { reply: `250 ${'x'.repeat(1_048_576)}` }, why: new RegExp(`line of more than ${MAX_LINE} bytes`) },
];

for (const c of CASES) {
  test(`${c.name}: that connection ends, the caller gets UNAVAILABLE saying why, the pool recovers`, async (t) => {
    let hostile = true;
    const script = (ctx: FaultContext): Fault | undefined => (hostile && ctx.stage === c.stage ? c.fault : undefined);
    const { logger, entries } = recordingLogger('debug');
    // A hostile greeting means no connection ever comes up: boot must not wait for one.
    const { peer, svc } = await startRig(t, { script: c.stage === 'connect' ? script : undefined }, { ...FAST, SMTP_GREETING_TIMEOUT_MS: '200' }, { log: logger });
    peer.script = script;
    if (c.stage === 'connect') peer.dropAll();
    const started = Date.now();
    const err = await expectGrpcError(sendMail(svc, mail('hostile')));
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
    assert.match(err.details, c.why, 'the caller is told why');
    assert.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
    assert.ok(entries.some((e) => typeof e.reason === 'string' && c.why.test(e.reason) && (e.code === 'ECONNECTION' || e.code === undefined)), 'logged as ECONNECTION, with the reason');
    hostile = false;
    await waitForPool(svc, 5000);
    assert.equal((await sendMail(svc, mail('after'))).status, 'SUCCESS', 'the pool recovered');
    assert.deepEqual(peer.violations, []);
  });
}

test('a relay that echoes the AUTH line in its refusal: the credential reaches no log line and no caller', async (t) => {
  const user = 'robot@example.com';
  const password = 'S3cret-pa55word-for-the-echo';
  const credential = Buffer.from(`\u0000${user}\u0000${password}`).toString('base64');
  const { logger, lines } = recordingLogger('debug');
  const { peer, svc } = await startRig(
    t,
    { auth: { user, pass: password }, script: (c) => (c.stage === 'AUTH' ? { reply: `535 5.7.8 Authentication failed for AUTH ${c.arg}` } : undefined) },
    { ...FAST, EMAIL: user, APP_PASSWORD: password },
    { log: logger },
  );
  const err = await expectGrpcError(sendMail(svc, mail('echo')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.ok(peer.count('AUTH') > 0, 'AUTH was tried');
  const seen = [...lines, err.details, JSON.stringify(err.metadata.getMap())].join('\n');
  for (const secret of [credential, password, Buffer.from(password).toString('base64')]) assert.ok(!seen.includes(secret), `${secret} leaked`);
  assert.match(err.details, /535/, 'the code still tells the caller what happened');
});

test('the reader: no input throws, what it keeps is bounded, and a flood ends after the first bound it crosses', () => {
  const garbage = [
    '\n\n\n',
    '\r\r\r',
    '250',
    '250-',
    'ünïcödé\r\n',
    '\u0000\u0000',
    `${'9'.repeat(3000)}\r\n`,
    `250-${'x'.repeat(MAX_LINE)}`,
    '250-a\r\n'.repeat(MAX_LINES + 10),
  ];
  for (const input of garbage) {
    const errors: string[] = [];
    const replies: string[][] = [];
    const reader = new ReplyReader(
      (l) => replies.push(l),
      (e) => errors.push(e.message),
    );
    for (let i = 0; i < input.length; i += 7) reader.push(input.slice(i, i + 7));
    reader.push('250 ok\r\n');
    assert.ok(errors.length <= 1, `${JSON.stringify(input.slice(0, 20))}: at most one error, then silence`);
  }
  // 64 MB of continuation lines: the reader stops at MAX_LINES, having kept no more than MAX_PENDING.
  const errors: string[] = [];
  const reader = new ReplyReader(
    () => assert.fail('no reply completes'),
    (e) => errors.push(e.message),
  );
  const chunk = `250-${'y'.repeat(200)}\r\n`.repeat(300);
  for (let sent = 0; sent < 64 * 1_048_576; sent += chunk.length) reader.push(chunk);
  assert.deepEqual(errors, [`the SMTP relay sent a reply of more than ${MAX_LINES} lines: connection dropped`]);
  // Long lines just under the limit: the byte bound comes first.
  const bytes: string[] = [];
  const wide = new ReplyReader(
    () => undefined,
    (e) => bytes.push(e.message),
  );
  for (let i = 0; i < 40; i++) wide.push(`250-${'w'.repeat(MAX_LINE - 10)}\r\n`);
  assert.deepEqual(bytes, [`the SMTP relay sent more than ${MAX_PENDING} bytes without a complete reply: connection dropped`]);
});

test('a relay that hangs up on every MAIL: the free requeues are bounded, the caller gets UNAVAILABLE', async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'MAIL' ? { drop: true } : undefined) }, { ...FAST, QUEUE_TIMEOUT_MS: '60000' });
  const err = await expectGrpcError(sendMail(svc, mail('hangup')));
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  // SEND_MAX_ATTEMPTS=2: the job goes back at no cost twice, the third hang-up fails it.
  assert.equal(peer.count('MAIL'), 3, 'not retried for ever');
});
