// Capture mode: with no EMAIL_HOST the service sends to its embedded relay,
// which writes each accepted message to MAIL_CAPTURE_DIR as one .eml file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { simpleParser, type AddressObject } from 'mailparser';
import { startService, sendMail, expectGrpcError, type RunningService } from './helpers.js';

let dir: string;
let svc: RunningService;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailroom-capture-'));
  // No EMAIL_HOST on purpose: that is what selects capture mode.
  svc = await startService({ MAIL_CAPTURE_DIR: dir, WORKERS: '1', EMAIL_FROM: 'noreply@example.com', SMTP_BACKOFF_BASE_MS: '20' });
});

after(async () => {
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a SendMail leaves exactly one .eml file whose content matches', async () => {
  assert.ok(svc.service.capture !== undefined, 'capture server running');
  assert.equal(svc.service.capture.dir, dir);
  const res = await sendMail(svc, { to: 'Ann <ann@example.com>', subject: 'Captured ✓', body: 'Hello from capture mode.\n' });
  assert.equal(res.status, 'SUCCESS');
  assert.match(res.smtp_response, /^250 captured as .+\.eml$/);

  const files = readdirSync(dir);
  const eml = files.filter((f) => f.endsWith('.eml'));
  assert.equal(eml.length, 1, `files: ${files.join(', ')}`);
  assert.equal(files.length, 1, 'no partial file left behind');
  assert.ok(res.smtp_response.endsWith(eml[0] as string), 'the reply names the file');

  const parsed = await simpleParser(readFileSync(join(dir, eml[0] as string)));
  assert.equal(parsed.subject, 'Captured ✓');
  assert.equal(parsed.text?.trimEnd(), 'Hello from capture mode.');
  assert.equal(parsed.messageId, res.message_id);
  const to = parsed.to as AddressObject;
  assert.deepEqual(to.value.map((v) => [v.name, v.address]), [['Ann', 'ann@example.com']]);
  assert.equal((parsed.from as AddressObject).value[0]?.address, 'noreply@example.com');
});

test('each .eml starts with its envelope: Return-Path and one Delivered-To per recipient, Bcc included; the Bcc is in no header', async () => {
  const res = await sendMail(svc, { to: 'to@example.com', cc: ['cc@example.com'], bcc: ['hidden@example.com'], subject: 'envelope', body: 'b' });
  const file = res.smtp_response.replace(/^250 captured as /, '');
  const text = readFileSync(join(dir, file), 'utf8');
  const head = text.split('\r\n').slice(0, 4);
  assert.deepEqual(head, ['Return-Path: <noreply@example.com>', 'Delivered-To: to@example.com', 'Delivered-To: cc@example.com', 'Delivered-To: hidden@example.com']);
  const headers = text.slice(0, text.indexOf('\r\n\r\n'));
  assert.equal(headers.split('hidden@example.com').length, 2, 'the Bcc address appears only in its Delivered-To line');
  // What docs/operating.md says to do to find the latest mail for an address:
  const latest = readdirSync(dir).filter((f) => f.endsWith('.eml')).sort().reverse().find((f) => readFileSync(join(dir, f), 'utf8').includes('\r\nDelivered-To: hidden@example.com\r\n'));
  assert.equal(latest, file);
});

test('a capture folder removed while the service runs is made again', async () => {
  rmSync(dir, { recursive: true, force: true });
  const res = await sendMail(svc, { to: 'ann@example.com', subject: 'after cleanup', body: 'b' });
  assert.equal(res.status, 'SUCCESS');
  assert.equal(readdirSync(dir).length, 1);
});

test('a folder that cannot be written: UNAVAILABLE with the relay 451 at once, then sending recovers', async () => {
  rmSync(dir, { recursive: true, force: true });
  writeFileSync(dir, 'a file where the folder should be');
  const started = Date.now();
  const err = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 'nowhere to go', body: 'b' }));
  assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
  assert.deepEqual(err.metadata.get('smtp-code'), ['451']);
  assert.ok(Date.now() - started < 5_000, 'answered, not left to the data timeout');

  rmSync(dir, { force: true });
  const res = await sendMail(svc, { to: 'ann@example.com', subject: 'back', body: 'b' });
  assert.equal(res.status, 'SUCCESS');
});

test('a captured .eml carries everything: attachments, inline parts, extra headers, List-Unsubscribe', async () => {
  const file = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
  const res = await sendMail(svc, {
    to: 'x@example.com',
    subject: 'with parts',
    body: 'b',
    html: '<img src="cid:pic">',
    attachments: [
      { filename: 'data.bin', content: file },
      { filename: 'pic.png', content: Buffer.from('png'), content_id: 'pic' },
    ],
    headers: [{ name: 'X-Trace', value: 'capture' }],
    list_unsubscribe: 'mailto:stop@example.com',
  });
  const name = res.smtp_response.replace(/^250 captured as /, '');
  const text = readFileSync(join(dir, name), 'utf8');
  const parsed = await simpleParser(text);
  assert.ok(parsed.attachments.find((a) => a.filename === 'data.bin')?.content.equals(file));
  assert.equal(parsed.attachments.find((a) => a.filename === 'pic.png')?.cid, 'pic');
  assert.equal(parsed.headers.get('x-trace'), 'capture');
  assert.match(text, /^List-Unsubscribe: <mailto:stop@example\.com>\r$/m);
});
