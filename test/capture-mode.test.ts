// Capture mode: with no EMAIL_HOST the service sends to its embedded relay,
// which writes each accepted message to MAIL_CAPTURE_DIR as one .eml file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser, type AddressObject } from 'mailparser';
import { startService, sendMail, type RunningService } from './helpers.js';

let dir: string;
let svc: RunningService;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailroom-capture-'));
  // No EMAIL_HOST on purpose: that is what selects capture mode.
  svc = await startService({ MAIL_CAPTURE_DIR: dir, WORKERS: '1', EMAIL_FROM: 'noreply@example.com' });
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
