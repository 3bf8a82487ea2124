// DKIM end to end: every message the service sends (SendMail with its
// parts, code mail, queued mail) carries a signature that an independent
// verifier (dkimpy, from Debian) accepts against the public key served by a
// resolver of the test's own, and that mailauth's verifier accepts too; a
// changed message fails. Keys that must not be used stop boot with exit 2,
// without a word of the key in the output; SIGHUP rotates the key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { codeFromMail, recordingLogger, relayEnv, sendCode, sendMail, spawnService, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';
import { queue } from './outbox-client.js';
import { pythonDkimVerify } from './python.js';

const dir = mkdtempSync(join(tmpdir(), 'mailroom-dkim-'));
const DOMAIN = 'example.com';
const SELECTOR = 's2026';

interface TestKey {
  readonly file: string;
  readonly pem: string;
  /** the TXT record of SELECTOR._domainkey.DOMAIN */
  readonly record: string;
}

function writeKey(name: string, kind: 'rsa' | 'ed25519', bits = 2048, file = join(dir, `${name}.pem`)): TestKey {
  const { privateKey, publicKey } = kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(file, pem);
  const der = (publicKey as KeyObject).export({ type: 'spki', format: 'der' });
  // RFC 8463: an Ed25519 record holds the bare 32-byte key, not its SPKI wrapping.
  const p = kind === 'rsa' ? der.toString('base64') : der.subarray(der.length - 32).toString('base64');
  return { file, pem, record: `v=DKIM1; k=${kind}; p=${p}` };
}

async function verifyBoth(raw: string, key: TestKey): Promise<{ python: boolean[]; mailauth: string[] }> {
  const python = (await pythonDkimVerify(raw, SELECTOR, DOMAIN, key.record)).verified;
  const resolver = async (name: string): Promise<string[][]> => {
    if (name.toLowerCase() !== `${SELECTOR}._domainkey.${DOMAIN}`) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return [[key.record]];
  };
  const result = await dkimVerify(raw, { resolver });
  return { python, mailauth: result.results.map((r) => r.status.result) };
}

function signedFields(raw: string): string[] {
  const header = /^DKIM-Signature:(.*?)\r\n(?![ \t])/ms.exec(raw)?.[1] ?? '';
  const h = /\bh=([^;]*)/.exec(header.replace(/\r\n[ \t]/g, ''))?.[1] ?? '';
  return h.split(':').map((f) => f.trim().toLowerCase()).sort();
}

let smtp: SmtpPeer;
let rsa: TestKey;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp();
  rsa = writeKey('rsa', 'rsa');
  svc = await startService(
    relayEnv(smtp.port, { WORKERS: '2', EMAIL_FROM: 'Shop <shop@mail.example.com>', DKIM_DOMAIN: DOMAIN, DKIM_SELECTOR: SELECTOR, DKIM_PRIVATE_KEY_FILE: rsa.file, OTP_RETURN_CODE: 'false' }),
  );
});

after(async () => {
  await svc.close();
  await smtp.close();
});

test('SendMail with every part, code mail and queued mail are signed (RSA 2048, relaxed/relaxed) and verify independently', async () => {
  const before = smtp.messages.length;
  await sendMail(svc, {
    to: 'Ann <ann@example.org>',
    cc: ['cc@example.org'],
    reply_to: 'help@example.com',
    subject: 'Grüße – your invoice',
    body: 'Text  with   spaces   \nand trailing blanks   \n\n\n',
    html: '<p><img src="cid:logo"> Hello</p>',
    attachments: [
      { filename: 'invoice.pdf', content: randomBytes(40_000) },
      { filename: 'logo.png', content: randomBytes(2000), content_id: 'logo' },
    ],
    headers: [{ name: 'X-Campaign', value: 'dkim' }],
    list_unsubscribe: 'https://example.com/u/1, mailto:u@example.com',
  });
  await sendCode(svc, 'code@example.org');
  await codeFromMail(smtp, 'code@example.org');
  const queued = await queue(svc, { to: 'later@example.org', subject: 'queued', body: 'from the outbox' });
  assert.equal(queued.status, 'SUCCESS');
  const mails = await smtp.waitForMessages(before + 3);
  for (const m of mails.slice(before)) {
    assert.match(m.raw, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;/);
    assert.deepEqual(await verifyBoth(m.raw, rsa), { python: [true], mailauth: ['pass'] });
  }
  const full = mails[before]!.raw;
  assert.deepEqual(signedFields(full), ['cc', 'content-type', 'date', 'from', 'list-unsubscribe', 'list-unsubscribe-post', 'message-id', 'mime-version', 'reply-to', 'subject', 'to']);
  // The verifier can say no: a changed subject, a changed byte of the body.
  const tampered = full.replace(/^Subject: .*$/m, 'Subject: changed');
  assert.deepEqual((await verifyBoth(tampered, rsa)).python, [false]);
  const body = full.indexOf('\r\n\r\n') + 10;
  assert.deepEqual((await verifyBoth(full.slice(0, body) + (full[body] === 'A' ? 'B' : 'A') + full.slice(body + 1), rsa)).python, [false]);
});

test('an Ed25519 key signs ed25519-sha256 (RFC 8463), verified by dkimpy', async (t) => {
  const ed = writeKey('ed', 'ed25519');
  const other = await startService(relayEnv(smtp.port, { WORKERS: '1', EMAIL_FROM: 'shop@example.com', DKIM_DOMAIN: DOMAIN, DKIM_SELECTOR: SELECTOR, DKIM_PRIVATE_KEY_FILE: ed.file }));
  t.after(() => other.close());
  const before = smtp.messages.length;
  await sendMail(other, { to: 'a@example.org', subject: 'ed', body: 'signed with Ed25519' });
  const raw = (await smtp.waitForMessages(before + 1))[before]!.raw;
  assert.match(raw, /a=ed25519-sha256/);
  assert.deepEqual((await pythonDkimVerify(raw, SELECTOR, DOMAIN, ed.record)).verified, [true]);
});

test('SIGHUP rotates the key; a key that does not load on SIGHUP keeps the one before', async (t) => {
  const file = join(dir, 'rotating.pem');
  const first = writeKey('rot1', 'rsa', 2048, file);
  const logs = recordingLogger('info');
  const rot = await startService(relayEnv(smtp.port, { WORKERS: '1', EMAIL_FROM: 'shop@example.com', DKIM_DOMAIN: DOMAIN, DKIM_SELECTOR: SELECTOR, DKIM_PRIVATE_KEY_FILE: file }), { log: logs.logger });
  t.after(() => rot.close());
  const sendOne = async (): Promise<string> => {
    const before = smtp.messages.length;
    await sendMail(rot, { to: 'a@example.org', subject: 'rot', body: 'b' });
    return (await smtp.waitForMessages(before + 1))[before]!.raw;
  };
  assert.deepEqual((await pythonDkimVerify(await sendOne(), SELECTOR, DOMAIN, first.record)).verified, [true]);
  const second = writeKey('rot2', 'rsa', 2048, file);
  rot.service.reload();
  const raw = await sendOne();
  assert.deepEqual((await pythonDkimVerify(raw, SELECTOR, DOMAIN, second.record)).verified, [true]);
  assert.deepEqual((await pythonDkimVerify(raw, SELECTOR, DOMAIN, first.record)).verified, [false]);
  writeFileSync(file, 'not a key');
  rot.service.reload();
  assert.deepEqual((await pythonDkimVerify(await sendOne(), SELECTOR, DOMAIN, second.record)).verified, [true]);
  const messages = logs.entries.map((e) => e.message);
  assert.ok(messages.some((m) => m.includes('re-read the DKIM key')), messages.join('\n'));
  assert.ok(messages.some((m) => m.includes('kept the DKIM key as loaded before')), messages.join('\n'));
  const all = JSON.stringify(logs.entries);
  for (const key of [first, second]) assert.ok(!all.includes(key.pem.split('\n')[1]!), 'no key text in the logs');
});

test('keys and settings that must not be used stop boot with exit 2, naming the setting and never the key', async () => {
  const weak = writeKey('weak', 'rsa', 1024);
  const good = writeKey('good', 'rsa');
  const garbage = join(dir, 'garbage.pem');
  writeFileSync(garbage, '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n');
  const ec = join(dir, 'ec.pem');
  writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const base = { EMAIL_FROM: 'shop@example.com', DKIM_DOMAIN: DOMAIN, DKIM_SELECTOR: SELECTOR, PORT: '0', MAIL_CAPTURE_DIR: join(dir, 'mail') };
  const cases: [Record<string, string>, RegExp][] = [
    [{ ...base, DKIM_PRIVATE_KEY_FILE: weak.file }, /an RSA key of 1024 bits; at least 2048/],
    [{ ...base, DKIM_PRIVATE_KEY_FILE: garbage }, /not a PEM private key/],
    [{ ...base, DKIM_PRIVATE_KEY_FILE: ec }, /a ec key; RSA \(2048 bits or more\) or Ed25519/],
    [{ ...base, DKIM_PRIVATE_KEY_FILE: join(dir, 'missing.pem') }, /cannot read it \(ENOENT\)/],
    [{ ...base, EMAIL_FROM: 'shop@other.example', DKIM_PRIVATE_KEY_FILE: good.file }, /EMAIL_FROM's domain \(other\.example\) is not it or under it/],
    [{ ...base, DKIM_PRIVATE_KEY_FILE: good.file, DKIM_SELECTOR: '' }, /set all three to sign, or none/],
    [{ ...base, DKIM_PRIVATE_KEY_FILE: good.file, DKIM_DOMAIN: 'not a domain' }, /DKIM_DOMAIN="not a domain": expected a domain name/],
  ];
  for (const [env, reason] of cases) {
    const child = spawnService(env, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 2, output);
    assert.match(output, reason);
    for (const key of [weak, good]) assert.ok(!output.includes(key.pem.split('\n')[1]!), 'the key is never printed');
  }
});
