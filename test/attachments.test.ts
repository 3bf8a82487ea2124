// Attachments and inline parts end to end: a real gRPC client, the service,
// a real SMTP server; every message read back by two parsers that share no
// code (mailparser, and Python's email package), byte for byte on the files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { simpleParser } from 'mailparser';
import { eventually, startSmtp, startService, relayEnv, sendMail, expectGrpcError, type SmtpPeer, type RunningService } from './helpers.js';
import { defects, leaves, pythonParse, shape } from './python.js';

let smtp: SmtpPeer;
let svc: RunningService;
/** the same service with small limits */
let small: RunningService;

before(async () => {
  smtp = await startSmtp();
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2', EMAIL_FROM: 'Shop <shop@example.com>' }));
  small = await startService(relayEnv(smtp.port, { WORKERS: '1', EMAIL_FROM: 'shop@example.com', MAX_ATTACHMENTS: '3', MAX_MESSAGE_BYTES: '1048576' }));
});

after(async () => {
  await svc.close();
  await small.close();
  await smtp.close();
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('an invoice: text, html with an inline logo, a PDF and a non-ASCII file, read back by two parsers', async () => {
  const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), randomBytes(150_000)]);
  const logo = randomBytes(3000);
  const notes = Buffer.from('Zeile 1\r\nZeile 2 – äöü\r\n', 'utf8');
  const before = smtp.messages.length;
  const res = await sendMail(svc, {
    to: 'ann@example.com',
    subject: 'Your invoice',
    body: 'Invoice attached.',
    html: '<p><img src="cid:logo@shop"> Invoice attached.</p>',
    attachments: [
      { filename: 'invoice-2026-12.pdf', content: pdf },
      { filename: 'Überweisung – Notizen.txt', content: notes, content_type: 'text/plain; charset=utf-8' },
      { filename: 'logo.png', content: logo, content_id: 'logo@shop' },
    ],
  });
  assert.equal(res.status, 'SUCCESS');
  const raw = (await smtp.waitForMessages(before + 1))[before]!.raw;

  for (const line of raw.split('\r\n')) assert.ok(line.length <= 998, `a line of ${line.length} octets`);
  const base64Lines = raw.split('\r\n').filter((l) => /^[A-Za-z0-9+/]{60,}={0,2}$/.test(l));
  assert.ok(base64Lines.length > 2000, 'the files are base64');
  assert.ok(base64Lines.every((l) => l.length <= 76), 'base64 in lines of at most 76');

  const py = await pythonParse(raw);
  assert.deepEqual(defects(py.tree), [], 'Python finds no defect');
  assert.equal(shape(py.tree), 'multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),application/pdf,text/plain)');
  const [text, html, png, pdfPart, txt] = leaves(py.tree);
  assert.equal(text?.text?.trim(), 'Invoice attached.');
  assert.match(html?.text ?? '', /cid:logo@shop/);
  assert.deepEqual([png?.cid, png?.disposition, png?.filename, png?.sha256], ['<logo@shop>', 'inline', 'logo.png', sha(logo)]);
  assert.deepEqual([pdfPart?.disposition, pdfPart?.filename, pdfPart?.sha256, pdfPart?.size], ['attachment', 'invoice-2026-12.pdf', sha(pdf), pdf.length]);
  assert.deepEqual([txt?.filename, txt?.sha256], ['Überweisung – Notizen.txt', sha(notes)]);

  const parsed = await simpleParser(raw);
  assert.equal(parsed.text?.trim(), 'Invoice attached.');
  const byName = new Map(parsed.attachments.map((a) => [a.filename, a]));
  assert.ok(byName.get('invoice-2026-12.pdf')?.content.equals(pdf));
  assert.equal(byName.get('invoice-2026-12.pdf')?.contentType, 'application/pdf');
  assert.ok(byName.get('Überweisung – Notizen.txt')?.content.equals(notes));
  assert.equal(byName.get('logo.png')?.cid, 'logo@shop');
  assert.ok(byName.get('logo.png')?.content.equals(logo));
});

test('filenames: long and non-ASCII ones survive RFC 2231 sections; the type comes from the name when none is given', async () => {
  const names = [`${'é'.repeat(120)}.pdf`, `${'report-'.repeat(30)}final.csv`, 'naïve "quoted" name.bin', '日本語のファイル名.zip'];
  const files = names.map(() => randomBytes(500));
  const before = smtp.messages.length;
  await sendMail(svc, { to: 'b@example.com', subject: 'names', body: 'see attached', attachments: names.map((filename, i) => ({ filename, content: files[i] })) });
  const raw = (await smtp.waitForMessages(before + 1))[before]!.raw;
  for (const line of raw.split('\r\n')) assert.ok(line.length <= 998);
  const py = await pythonParse(raw);
  assert.deepEqual(defects(py.tree), []);
  const got = leaves(py.tree).slice(1);
  assert.deepEqual(
    got.map((p) => p.filename),
    names,
  );
  assert.deepEqual(
    got.map((p) => p.type),
    ['application/pdf', 'text/csv', 'application/octet-stream', 'application/zip'],
  );
  assert.deepEqual(
    got.map((p) => p.sha256),
    files.map(sha),
  );
  const parsed = await simpleParser(raw);
  assert.deepEqual(
    parsed.attachments.map((a) => a.filename),
    names,
  );
});

test('a message of 7 MB of attachments passes the gRPC limit and arrives whole (MAX_MESSAGE_BYTES 10 MiB)', async () => {
  const big = randomBytes(7 * 1_000_000);
  const before = smtp.messages.length;
  const res = await sendMail(svc, { to: 'c@example.com', subject: 'big', body: 'b', attachments: [{ filename: 'big.bin', content: big }] }, { deadline: Date.now() + 60_000 });
  assert.equal(res.status, 'SUCCESS');
  const raw = (await smtp.waitForMessages(before + 1))[before]!.raw;
  const py = await pythonParse(raw);
  assert.equal(leaves(py.tree)[1]?.sha256, sha(big));
});

test('refused attachments name what is wrong, and nothing reaches the relay', async () => {
  const count = smtp.messages.length;
  const one = (a: object) => sendMail(small, { to: 'd@example.com', subject: 's', body: 'b', attachments: [{ content: Buffer.from('x'), ...a }] });
  const cases: [Promise<unknown>, RegExp][] = [
    [one({ filename: '../etc/passwd' }), /attachments\[0\]\.filename: a file name, not a path/],
    [one({ filename: 'C:\\temp\\a.txt' }), /not a path/],
    [one({ filename: 'a\r\nContent-Type: text/html' }), /CR, LF, NUL/],
    [one({ filename: 'nul\0.txt' }), /CR, LF, NUL/],
    [one({ filename: '' }), /filename: required for an attachment/],
    [one({ filename: 'x'.repeat(256) }), /at most 255 characters/],
    [one({ filename: 'a.txt', content_type: 'text/plain\r\nBcc: x@evil.example' }), /content_type: a MIME type/],
    [one({ filename: 'a.eml', content_type: 'message/rfc822' }), /cannot be attached in base64/],
    [one({ filename: 'a.png', content_id: 'logo' }), /an inline part needs html/],
    [sendMail(small, { to: 'd@example.com', subject: 's', body: 'b', html: '<p>no image</p>', attachments: [{ filename: 'a.png', content: Buffer.from('x'), content_id: 'logo' }] }), /never refers to cid:logo/],
    [one({ filename: 'a.png', content_id: 'lo go>' }), /content_id: 1 to 200 printable/],
    [sendMail(small, { to: 'd@example.com', subject: 's', body: 'b', attachments: Array.from({ length: 4 }, (_, i) => ({ filename: `${i}.txt`, content: Buffer.from('x') })) }), /attachments: at most 3 \(MAX_ATTACHMENTS; got 4\)/],
    [one({ filename: 'big.bin', content: randomBytes(800_000) }), /more than MAX_MESSAGE_BYTES \(1048576\)/],
  ];
  for (const [call, reason] of cases) {
    const err = await expectGrpcError(call);
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.details);
    assert.match(err.details, reason);
  }
  // Text and a file that together pass the file's own check but not the whole message's.
  const err = await expectGrpcError(sendMail(small, { to: 'd@example.com', subject: 's', body: 'é'.repeat(200_000), attachments: [{ filename: 'a.bin', content: randomBytes(500_000) }] }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /message: \d+ bytes encoded, more than MAX_MESSAGE_BYTES/);
  assert.equal(smtp.messages.length, count);
});

test('the memory budget counts attachments: two 1.5 MB files do not fit in QUEUE_MAX_BYTES of 5 MiB at once', async (t) => {
  // Held long enough for the second call to arrive on a loaded machine.
  const slow = await startSmtp({ dataDelayMs: 3000 });
  const tight = await startService(relayEnv(slow.port, { WORKERS: '2', QUEUE_MAX_BYTES: String(5 * 1_048_576), QUEUE_MAX_BYTES_PER_CALLER: String(5 * 1_048_576) }));
  t.after(async () => {
    await tight.close();
    await slow.close();
  });
  const file = randomBytes(1_500_000);
  const first = sendMail(tight, { to: 'a@example.com', subject: 'one', body: 'b', attachments: [{ filename: 'a.bin', content: file }] });
  await eventually(() => slow.holding === 1, 10_000, 'the relay holding the first');
  const second = await expectGrpcError(sendMail(tight, { to: 'a@example.com', subject: 'two', body: 'b', attachments: [{ filename: 'b.bin', content: file }] }));
  assert.equal(second.code, grpc.status.RESOURCE_EXHAUSTED, second.details);
  assert.equal((await first).status, 'SUCCESS');
  // Once the first is settled its share is back.
  assert.equal((await sendMail(tight, { to: 'a@example.com', subject: 'three', body: 'b', attachments: [{ filename: 'c.bin', content: file }] })).status, 'SUCCESS');
});
