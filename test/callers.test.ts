// Callers who must authenticate: bearer tokens from AUTH_TOKENS_FILE (and
// SIGHUP re-reading it), client certificates (mTLS), and protected mode for a
// service that authenticates nobody. Real certificates made with openssl,
// real gRPC clients, the real process where only a process shows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { MailServiceClient } from '../src/generated/mail/MailService.js';
import type { OtpServiceClient } from '../src/generated/mail/OtpService.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import { check, healthClient, reflect } from './ops-clients.js';
import { expectGrpcError, recordingLogger, relayEnv, spawnService, startService, startSmtp } from './helpers.js';
import { issueClient, makePki } from './pki.js';
import { startProcess } from './process.js';

const SHOP = `shop-${'s'.repeat(40)}`;
const AUDITOR = `audit-${'a'.repeat(40)}`;

function tokensFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-callers-')), 'tokens');
  writeFileSync(file, text);
  return file;
}

function bearer(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

/** Clients on connections of their own: grpc-js would otherwise share one with any client of equal credentials. */
function clients(address: string, credentials = grpc.credentials.createInsecure()): { mail: MailServiceClient; otp: OtpServiceClient; close(): void } {
  const proto = loadMailProto();
  const own = { 'grpc.use_local_subchannel_pool': 1 };
  const mail = new proto.mail.MailService(address, credentials, own);
  const otp = new proto.mail.OtpService(address, credentials, own);
  return { mail, otp, close: () => (mail.close(), otp.close()) };
}

function send(client: MailServiceClient, req: SendEmailRequest, metadata = new grpc.Metadata()): Promise<unknown> {
  return new Promise((resolve, reject) => client.SendMail(req, metadata, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res))));
}

test('tokens: none or unknown is UNAUTHENTICATED, a service not granted is PERMISSION_DENIED; the caller is named in the log, its token never', async (t) => {
  const smtp = await startSmtp();
  const logs = recordingLogger('debug');
  const file = tokensFile(`# who may call\nshop ${SHOP}\nauditor ${AUDITOR} mail.OtpService\n`);
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', AUTH_TOKENS_FILE: file }), { log: logs.logger });
  const address = `127.0.0.1:${svc.service.port}`;
  const c = clients(address);
  const health = healthClient(address);
  t.after(async () => {
    c.close();
    health.close();
    await svc.close();
    await smtp.close();
  });
  const req = { to: 'a@example.com', subject: 'hi', body: 'b' };
  const none = await expectGrpcError(send(c.mail, req));
  assert.equal(none.code, grpc.status.UNAUTHENTICATED);
  assert.match(none.details, /authorization: Bearer/);
  assert.deepEqual(none.metadata.get('mailroom-error'), ['EUNAUTHENTICATED']);
  assert.equal((await expectGrpcError(send(c.mail, req, bearer(`x${SHOP}`)))).code, grpc.status.UNAUTHENTICATED);
  const basic = new grpc.Metadata();
  basic.set('authorization', `Basic ${SHOP}`);
  assert.equal((await expectGrpcError(send(c.mail, req, basic))).code, grpc.status.UNAUTHENTICATED);
  const denied = await expectGrpcError(send(c.mail, req, bearer(AUDITOR)));
  assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
  assert.match(denied.details, /auditor may not call mail\.MailService/);
  assert.equal(smtp.messages.length, 0, 'nothing refused reached the relay');
  assert.deepEqual(await send(c.mail, req, bearer(SHOP)).then((r) => (r as { status: string }).status), 'SUCCESS');
  assert.equal(smtp.messages.length, 1);
  // Health is open to everyone; reflection takes any valid token.
  assert.equal(await check(health, ''), 'SERVING');
  await assert.rejects(reflect(address, 'v1', { list_services: '' }), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED);
  const listed = await reflect(address, 'v1', { list_services: '' }, bearer(AUDITOR));
  assert.ok(listed.list_services_response?.service.some((s) => s.name === 'mail.MailService'));

  const lines = logs.lines.join('\n');
  assert.ok(!lines.includes(SHOP) && !lines.includes(AUDITOR), 'no token in any log line');
  assert.ok(logs.entries.some((e) => e.message === 'call' && e.caller === 'shop'), 'the access log names the caller');
});

test('idempotency keys and OTP caps are per caller: one cannot squat or spend another\'s', async (t) => {
  const smtp = await startSmtp();
  const file = tokensFile(`shop ${SHOP}\nother ${AUDITOR}\n`);
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', AUTH_TOKENS_FILE: file, OTP_MAX_CHECKS_PER_SECOND: '2' }));
  const c = clients(`127.0.0.1:${svc.service.port}`);
  t.after(async () => {
    c.close();
    await svc.close();
    await smtp.close();
  });
  await send(c.mail, { to: 'a@example.com', subject: 'squatter', body: 'x', idempotency_key: 'order-43' }, bearer(AUDITOR));
  await send(c.mail, { to: 'b@example.com', subject: 'the real order', body: 'y', idempotency_key: 'order-43' }, bearer(SHOP));
  assert.equal(smtp.messages.length, 2, 'the same key from two callers: two mails, no FAILED_PRECONDITION');
  const validate = (token: string): Promise<unknown> =>
    new Promise((resolve, reject) => c.otp.ValidateCode({ email: 'v@example.com', otpCode: '123456' }, bearer(token), (err, res) => (err ? reject(err) : resolve(res))));
  await validate(AUDITOR);
  await validate(AUDITOR);
  assert.equal((await expectGrpcError(validate(AUDITOR))).code, grpc.status.RESOURCE_EXHAUSTED, 'other spent its 2 checks this second');
  await validate(SHOP);
});

test('SIGHUP re-reads AUTH_TOKENS_FILE; a bad file keeps the tokens loaded before and says why', async (t) => {
  const smtp = await startSmtp();
  const file = tokensFile(`shop ${SHOP}\n`);
  const logs = recordingLogger('info');
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', AUTH_TOKENS_FILE: file }), { log: logs.logger });
  const c = clients(`127.0.0.1:${svc.service.port}`);
  t.after(async () => {
    c.close();
    await svc.close();
    await smtp.close();
  });
  const req = { to: 'a@example.com', subject: 'hi', body: 'b' };
  const rotated = `shop-${'r'.repeat(40)}`;
  writeFileSync(file, `shop ${rotated}\n`);
  svc.service.reload();
  assert.equal((await expectGrpcError(send(c.mail, req, bearer(SHOP)))).code, grpc.status.UNAUTHENTICATED, 'the old token is gone');
  await send(c.mail, req, bearer(rotated));
  assert.ok(logs.entries.some((e) => /^SIGHUP: re-read AUTH_TOKENS_FILE \(1 callers: shop\)/.test(e.message)));
  writeFileSync(file, 'shop short\n');
  svc.service.reload();
  await send(c.mail, req, bearer(rotated));
  const complaint = logs.entries.find((e) => e.message.startsWith('SIGHUP: AUTH_TOKENS_FILE not re-read'));
  assert.match(String(complaint?.reason), /the token of shop has 5 characters/);
  const summary = logs.entries.at(-1);
  assert.equal(summary?.message, 'SIGHUP: re-read nothing; kept AUTH_TOKENS_FILE as loaded before (it did not load: see the error above)');
  assert.ok(!logs.entries.some((e) => e.message.includes('nothing to re-read')), 'a file that is there and did not load is not "nothing to re-read"');
  assert.ok(!logs.lines.join('\n').includes(rotated), 'no token in any log line');
});

test('mTLS: a client certificate from the CA is required and names the caller; SIGHUP reloads the server certificate', async (t) => {
  // Their own CAs: the test writes over the server's certificate files.
  const pki = makePki('mtls');
  const other = makePki('mtls-other');
  const smtp = await startSmtp();
  const logs = recordingLogger('debug');
  const svc = await startService(
    relayEnv(smtp.port, { WORKERS: '1', GRPC_TLS_CERT_FILE: pki.server.certFile, GRPC_TLS_KEY_FILE: pki.server.keyFile, GRPC_TLS_CLIENT_CA_FILE: pki.caFile }),
    { log: logs.logger },
  );
  const address = `localhost:${svc.service.port}`;
  const ca = Buffer.from(pki.ca);
  const billing = issueClient(pki, 'billing');
  const stranger = issueClient(pki, 'stranger', other);
  const good = clients(address, grpc.credentials.createSsl(ca, Buffer.from(billing.key), Buffer.from(billing.cert)));
  const noCert = clients(address, grpc.credentials.createSsl(ca));
  const wrongCa = clients(address, grpc.credentials.createSsl(ca, Buffer.from(stranger.key), Buffer.from(stranger.cert)));
  const plain = clients(address);
  t.after(async () => {
    for (const c of [good, noCert, wrongCa, plain]) c.close();
    await svc.close();
    await smtp.close();
  });
  const req = { to: 'a@example.com', subject: 'mtls', body: 'b' };
  assert.equal(((await send(good.mail, req)) as { status: string }).status, 'SUCCESS');
  assert.ok(logs.entries.some((e) => e.message === 'call' && e.caller === 'billing'), 'the certificate subject names the caller');
  for (const c of [noCert, wrongCa, plain]) assert.equal((await expectGrpcError(send(c.mail, req))).code, grpc.status.UNAVAILABLE, 'no TLS session without a trusted client certificate');
  assert.equal(smtp.messages.length, 1);
  // A new server certificate (from the other CA) after SIGHUP: new connections get it.
  writeFileSync(pki.server.certFile, other.server.cert);
  writeFileSync(pki.server.keyFile, other.server.key);
  svc.service.reload();
  const fresh = clients(address, grpc.credentials.createSsl(ca, Buffer.from(billing.key), Buffer.from(billing.cert)));
  const trustsOther = clients(address, grpc.credentials.createSsl(Buffer.from(other.ca), Buffer.from(billing.key), Buffer.from(billing.cert)));
  t.after(() => {
    fresh.close();
    trustsOther.close();
  });
  assert.equal((await expectGrpcError(send(fresh.mail, req))).code, grpc.status.UNAVAILABLE, 'the old CA no longer vouches for the server');
  assert.equal(((await send(trustsOther.mail, req)) as { status: string }).status, 'SUCCESS');
  assert.ok(logs.entries.some((e) => e.message === 'SIGHUP: re-read the gRPC TLS certificates'));
});

test('protected mode: no authentication and a non-loopback HOST stops boot with exit 2, unless ALLOW_UNAUTHENTICATED=true', async (t) => {
  const smtp = await startSmtp();
  t.after(() => smtp.close());
  const refused = spawnService(relayEnv(smtp.port, { PORT: '0', HOST: '0.0.0.0' }));
  let stderr = '';
  refused.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => refused.once('exit', (c) => resolve(c)));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /HOST="0\.0\.0\.0": callers are not authenticated/);
  assert.match(stderr, /AUTH_TOKENS_FILE/);
  const allowed = await startProcess(relayEnv(smtp.port, { HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED: 'true' }));
  t.after(() => {
    allowed.proc.kill('SIGKILL');
  });
  assert.ok(allowed.logs.some((e) => String(e.message).startsWith('ALLOW_UNAUTHENTICATED=true: anyone who reaches 0.0.0.0')));
  const defaulted = await startProcess(relayEnv(smtp.port, { HOST: '' }));
  t.after(() => {
    defaulted.proc.kill('SIGKILL');
  });
  assert.equal(defaulted.logs.find((e) => e.message === 'listening')?.host, '127.0.0.1', 'unauthenticated: loopback by default');
});
