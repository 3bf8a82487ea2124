// SendMail end to end: a real gRPC client, the service, a real SMTP server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { simpleParser, type AddressObject } from 'mailparser';
import { startSmtp, startService, relayEnv, sendMail, expectGrpcError, type SmtpPeer, type RunningService } from './helpers.js';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp();
  // A session's cap is drawn between 75 and 100 messages by default: the
  // 200-mail test below would sometimes see a connection replaced.
  svc = await startService(
    relayEnv(smtp.port, { WORKERS: '3', MAX_BODY_BYTES: '10000', EMAIL_FROM: 'Mail Room <sender@example.com>', SMTP_MAX_MESSAGES_PER_CONNECTION: '10000' }),
  );
});

after(async () => {
  await svc.close();
  await smtp.close();
});

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  if (a === undefined) return [];
  return (Array.isArray(a) ? a : [a]).flatMap((x) => x.value.map((v) => v.address ?? ''));
}

test('SendMail delivers headers, text and html parts, Cc in headers and Bcc only in the envelope', async () => {
  const before = smtp.messages.length;
  const res = await sendMail(svc, {
    to: 'Ann Example <ann@example.com>',
    cc: ['cc@example.org'],
    bcc: ['hidden@example.net'],
    reply_to: 'support@example.com',
    subject: 'Grüße, 你好',
    body: 'Hello Ann,\n.\nA line with only a dot above.\n',
    html: '<p>Hello <b>Ann</b></p>',
  });
  assert.equal(res.status, 'SUCCESS');
  assert.match(res.message_id, /^<[^@\s]+@example\.com>$/);
  assert.match(res.smtp_response, /^250 queued as m\d+$/);
  assert.equal(smtp.messages.length, before + 1);
  const got = smtp.messages.at(-1)!;
  assert.equal(got.from, 'sender@example.com');
  assert.deepEqual(got.to.sort(), ['ann@example.com', 'cc@example.org', 'hidden@example.net']);
  assert.doesNotMatch(got.raw, /hidden@example\.net/i, 'Bcc must never reach the headers');
  assert.match(got.raw, /^MIME-Version: 1\.0\r$/m);

  const parsed = await simpleParser(got.raw);
  assert.equal(parsed.subject, 'Grüße, 你好');
  assert.equal(parsed.messageId, res.message_id);
  assert.ok(parsed.date instanceof Date && Math.abs(parsed.date.getTime() - Date.now()) < 60_000);
  assert.deepEqual(addresses(parsed.from), ['sender@example.com']);
  assert.equal((parsed.from as AddressObject).value[0]?.name, 'Mail Room');
  assert.deepEqual(addresses(parsed.to), ['ann@example.com']);
  assert.deepEqual(addresses(parsed.cc), ['cc@example.org']);
  assert.deepEqual(addresses(parsed.replyTo), ['support@example.com']);
  assert.equal(parsed.bcc, undefined);
  assert.equal(parsed.text?.trimEnd(), 'Hello Ann,\n.\nA line with only a dot above.');
  assert.equal(parsed.html, '<p>Hello <b>Ann</b></p>');
});

test('a text-only message is single part, UTF-8 bodies survive, long lines are encoded', async () => {
  const long = 'x'.repeat(2000);
  await sendMail(svc, { to: 'b@example.com', subject: 'plain', body: `naïve café\n${long}` });
  const got = smtp.messages.at(-1)!;
  for (const line of got.raw.split('\r\n')) assert.ok(line.length <= 998, 'no line over 998 octets');
  const parsed = await simpleParser(got.raw);
  assert.equal(parsed.html, false);
  assert.equal(parsed.text?.trimEnd(), `naïve café\n${long}`);
});

test('several To addresses, deduplicated envelope', async () => {
  await sendMail(svc, { to: 'a@example.com, "Last, First" <b@example.com>', cc: ['A@example.com'], subject: 's', body: 'b' });
  const got = smtp.messages.at(-1)!;
  assert.deepEqual(got.to, ['a@example.com', 'b@example.com']);
  const parsed = await simpleParser(got.raw);
  assert.equal((parsed.to as AddressObject).value[1]?.name, 'Last, First');
});

test('bad input is INVALID_ARGUMENT and nothing reaches the SMTP server', async () => {
  const count = smtp.messages.length;
  const cases = [
    { to: '', subject: 's', body: 'b' },
    { to: 'not-an-address', subject: 's', body: 'b' },
    { to: 'a@b@example.com', subject: 's', body: 'b' },
    { to: 'a@example.com', subject: 'hi\r\nBcc: victim@example.com', body: 'b' },
    { to: 'a@example.com', subject: 'hi\nX-Injected: 1', body: 'b' },
    { to: 'a@example.com\r\nBcc: victim@example.com', subject: 's', body: 'b' },
    { to: 'a@example.com', cc: ['x@example.com\nBcc: y@example.com'], subject: 's', body: 'b' },
    { to: 'a@example.com', reply_to: 'r@example.com\r\nX: y', subject: 's', body: 'b' },
    { to: 'a@example.com', subject: 's', body: 'x'.repeat(10_001) },
    { to: 'a@example.com', subject: 's', body: 'nul\u0000byte' },
  ];
  for (const req of cases) {
    const err = await expectGrpcError(sendMail(svc, req));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(req).slice(0, 80)} → ${err.details}`);
  }
  assert.equal(smtp.messages.length, count);
});

test('200 mails over WORKERS=3 use exactly 3 SMTP connections', async () => {
  const connectionsBefore = smtp.connections.length;
  const count = smtp.messages.length;
  const results = await Promise.all(
    Array.from({ length: 200 }, (_, i) => sendMail(svc, { to: `user${i}@example.com`, subject: `n${i}`, body: 'persistent' })),
  );
  assert.equal(results.length, 200);
  assert.equal(smtp.messages.length, count + 200);
  assert.equal(connectionsBefore, 3, 'the pool dialled its 3 connections at boot');
  assert.equal(smtp.connections.length, 3, 'no further connection was opened');
  assert.equal(new Set(smtp.messages.slice(count).map((m) => m.connection)).size, 3, 'all three carried mail');
});
