// The caller's own header fields and List-Unsubscribe, end to end: what is
// allowed arrives as given (folded, encoded when not ASCII) in both
// parsers; what mailroom writes itself, or what would inject a field, is
// refused by name and never reaches the relay.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { simpleParser } from 'mailparser';
import { startSmtp, startService, relayEnv, sendMail, expectGrpcError, type SmtpPeer, type RunningService } from './helpers.js';
import { defects, pythonParse } from './python.js';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp();
  svc = await startService(relayEnv(smtp.port, { WORKERS: '1', EMAIL_FROM: 'shop@example.com' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

async function lastRaw(before: number): Promise<string> {
  return (await smtp.waitForMessages(before + 1))[before]!.raw;
}

test('custom headers arrive as given: X-*, threading, Auto-Submitted, non-ASCII and long values', async () => {
  const refs = Array.from({ length: 40 }, (_, i) => `<thread-${i}.${'a'.repeat(20)}@example.com>`).join(' ');
  const before = smtp.messages.length;
  await sendMail(svc, {
    to: 'ann@example.com',
    subject: 'Re: your order',
    body: 'b',
    headers: [
      { name: 'X-Campaign', value: 'december-2026' },
      { name: 'X-Tag', value: 'one' },
      { name: 'X-Tag', value: 'two' },
      { name: 'In-Reply-To', value: '<thread-39.aaaaaaaaaaaaaaaaaaaa@example.com>' },
      { name: 'References', value: refs },
      { name: 'Auto-Submitted', value: 'auto-generated' },
      { name: 'X-Note', value: 'Grüße aus Köln – 你好' },
    ],
  });
  const raw = await lastRaw(before);
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
  for (const line of head.split('\r\n')) assert.ok(line.length <= 998, `a header line of ${line.length}`);
  assert.ok(head.split('\r\n').filter((l) => l.startsWith('References:') || l.startsWith(' <thread')).every((l) => l.length <= 78), 'References is folded at 78');
  const py = await pythonParse(raw);
  assert.deepEqual(defects(py.tree), []);
  const h = (name: string): string[] => py.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  assert.deepEqual(h('X-Campaign'), ['december-2026']);
  assert.deepEqual(h('X-Tag'), ['one', 'two']);
  assert.deepEqual(h('Auto-Submitted'), ['auto-generated']);
  assert.deepEqual(h('X-Note'), ['Grüße aus Köln – 你好']);
  assert.equal(h('References')[0]?.replace(/\s+/g, ' '), refs);
  const parsed = await simpleParser(raw);
  assert.equal(parsed.inReplyTo, '<thread-39.aaaaaaaaaaaaaaaaaaaa@example.com>');
  assert.equal((parsed.references as string[]).length, 40);
});

test('List-Unsubscribe: https and mailto, with one-click POST for https (RFC 8058); mailto alone has no POST', async () => {
  let before = smtp.messages.length;
  await sendMail(svc, { to: 'a@example.com', subject: 's', body: 'b', list_unsubscribe: 'https://shop.example.com/unsub?u=42&t=abc, mailto:unsub@shop.example.com?subject=unsubscribe' });
  let py = await pythonParse(await lastRaw(before));
  const h = (name: string): string[] => py.headers.filter(([k]) => k.toLowerCase() === name.toLowerCase()).map(([, v]) => v.replace(/\s+/g, ' '));
  assert.deepEqual(h('List-Unsubscribe'), ['<https://shop.example.com/unsub?u=42&t=abc>, <mailto:unsub@shop.example.com?subject=unsubscribe>']);
  assert.deepEqual(h('List-Unsubscribe-Post'), ['List-Unsubscribe=One-Click']);
  before = smtp.messages.length;
  await sendMail(svc, { to: 'a@example.com', subject: 's', body: 'b', list_unsubscribe: 'mailto:unsub@shop.example.com' });
  py = await pythonParse(await lastRaw(before));
  assert.deepEqual(h('List-Unsubscribe'), ['<mailto:unsub@shop.example.com>']);
  assert.deepEqual(h('List-Unsubscribe-Post'), []);
});

test('fields mailroom writes, injections and bad unsubscribe URIs are refused by name; nothing is sent', async () => {
  const count = smtp.messages.length;
  const send = (extra: object) => sendMail(svc, { to: 'a@example.com', subject: 's', body: 'b', ...extra });
  const header = (name: string, value = 'x') => send({ headers: [{ name, value }] });
  const cases: [Promise<unknown>, RegExp][] = [
    [header('From', 'ceo@example.com'), /headers\[0\]\.name: From is refused \(mailroom writes it\)/],
    [header('sender'), /sender is refused/],
    [header('BCC', 'x@evil.example'), /BCC is refused/],
    [header('Message-ID', '<a@b>'), /Message-ID is refused/],
    [header('Content-Type', 'text/html'), /Content-Type is refused \(mailroom writes the MIME structure\)/],
    [header('Content-Transfer-Encoding', '8bit'), /Content-Transfer-Encoding is refused/],
    [header('DKIM-Signature', 'v=1'), /DKIM-Signature is refused/],
    [header('Received', 'from x'), /Received is refused/],
    [header('Return-Path', '<x@y>'), /Return-Path is refused/],
    [header('Subject', 'again'), /use the subject field/],
    [header('List-Unsubscribe', '<https://x.example>'), /use the list_unsubscribe field/],
    [header('X-Ok', 'fine\r\nBcc: victim@example.com'), /headers\[0\]\.value: X-Ok: must not contain CR, LF/],
    [header('X Bad', 'v'), /headers\[0\]\.name: 1 to 76 printable ASCII/],
    [header('X-Colon:', 'v'), /printable ASCII characters without a colon/],
    [header('X-Long', 'v'.repeat(2001)), /at most 2000 characters/],
    [send({ headers: [{ name: 'References', value: '<a@b>' }, { name: 'references', value: '<c@d>' }] }), /references twice/],
    [send({ list_unsubscribe: 'http://shop.example.com/unsub' }), /an http URL is refused; one-click unsubscribe \(RFC 8058\) needs https/],
    [send({ list_unsubscribe: 'javascript:alert(1)' }), /an https: URL and\/or a mailto: URI/],
    [send({ list_unsubscribe: 'https://a.example/x, https://b.example/y' }), /one https URL/],
    [send({ list_unsubscribe: '<mailto:unsub@shop.example.com>' }), /list_unsubscribe: must not contain CR, LF, < or >/],
    [send({ list_unsubscribe: 'https://a.example/x>, <mailto:evil@x.example' }), /must not contain CR, LF, < or >/],
    [send({ list_unsubscribe: 'https://a.example/x\r\nBcc: victim@example.com' }), /must not contain CR, LF, < or >/],
    [send({ list_unsubscribe: 'mailto:not an address' }), /mailto: and an address/],
  ];
  for (const [call, reason] of cases) {
    const err = await expectGrpcError(call);
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
    assert.match(err.details, reason);
  }
  assert.equal(smtp.messages.length, count);
});
