// The suppression list as a team manages it: SuppressionService (an admin
// token, or no authentication on loopback), the refusals it causes
// (SendMail, SendMailBatch per message, SendCode) before any SMTP, checked
// with a peer that records every RCPT it is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { SuppressionServiceClient } from '../src/generated/mail/SuppressionService.js';
import type { Suppression__Output } from '../src/generated/mail/Suppression.js';
import type { ListSuppressionsResponse__Output } from '../src/generated/mail/ListSuppressionsResponse.js';
import type { SendMailBatchResponse__Output } from '../src/generated/mail/SendMailBatchResponse.js';
import { expectGrpcError, metadataValue, relayEnv, sendCode, sendMail, startService, startSmtp, type SmtpPeerOptions } from './helpers.js';

type Call<Req, Res> = (req: Req, meta: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

function call<Req, Res>(fn: Call<Req, Res>, client: SuppressionServiceClient, req: Req, meta = new grpc.Metadata()): Promise<Res> {
  return new Promise((resolve, reject) => fn.call(client, req, meta, (err, res) => (err ? reject(err) : resolve(res as Res))));
}

function suppressions(address: string) {
  const client = new (loadMailProto().mail.SuppressionService)(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  return {
    client,
    add: (req: { address: string; reason?: 'SUPPRESSION_REASON_MANUAL' | 'SUPPRESSION_REASON_UNSPECIFIED' }, meta?: grpc.Metadata) =>
      call<typeof req, Suppression__Output>(client.AddSuppression as Call<typeof req, Suppression__Output>, client, req, meta),
    remove: (address: string, meta?: grpc.Metadata) => call<{ address: string }, Suppression__Output>(client.RemoveSuppression as Call<{ address: string }, Suppression__Output>, client, { address }, meta),
    get: (address: string, meta?: grpc.Metadata) => call<{ address: string }, Suppression__Output>(client.GetSuppression as Call<{ address: string }, Suppression__Output>, client, { address }, meta),
    list: (page_size: number, page_token = '') =>
      call<{ page_size: number; page_token: string }, ListSuppressionsResponse__Output>(client.ListSuppressions as Call<{ page_size: number; page_token: string }, ListSuppressionsResponse__Output>, client, { page_size, page_token }),
  };
}

/** A relay, the service in front of it (WORKERS=1, and `env`), and a SuppressionService client; all closed after the test. */
async function rig(t: { after: (fn: () => Promise<void>) => void }, smtpOptions: SmtpPeerOptions = {}, env: Record<string, string> = {}) {
  const smtp = await startSmtp(smtpOptions);
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', ...env }));
  const s = suppressions(`127.0.0.1:${svc.service.port}`);
  t.after(async () => {
    s.client.close();
    await svc.close();
    await smtp.close();
  });
  return { smtp, svc, s };
}

test('a suppressed address is refused everywhere before any SMTP: the peer never sees its RCPT; removed, it is mailed again', async (t) => {
  const rcpts: string[] = [];
  const { svc, s } = await rig(t, { extra: { onRcptTo: (a, _s, cb) => (rcpts.push(a.address.toLowerCase()), cb()) } });
  const added = await s.add({ address: 'Blocked@Example.com' });
  assert.deepEqual({ ...added, since: undefined }, { address: 'b***@example.com', reason: 'SUPPRESSION_REASON_MANUAL', since: undefined, message_id: '' });

  const one = await expectGrpcError(sendMail(svc, { to: 'fine@example.com', cc: ['ok@example.com'], bcc: ['blocked@example.com'], subject: 's', body: 'b' }));
  assert.equal(one.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(metadataValue(one, 'mailroom-error'), 'ESUPPRESSED');
  assert.match(one.details, /recipient 2 /);
  const queued = await expectGrpcError(sendMail(svc, { to: 'BLOCKED@example.com', subject: 's', body: 'b', delivery: 'DELIVERY_QUEUED' }));
  assert.equal(metadataValue(queued, 'mailroom-error'), 'ESUPPRESSED');
  const code = await expectGrpcError(sendCode(svc, 'blocked@example.com'));
  assert.equal(code.code, grpc.status.FAILED_PRECONDITION);
  const batch = await new Promise<SendMailBatchResponse__Output>((resolve, reject) =>
    svc.mail.SendMailBatch(
      { messages: [{ to: 'a@example.com', subject: 's', body: 'b' }, { to: 'blocked@example.com', subject: 's', body: 'b' }] },
      (err, res) => (err ? reject(err) : resolve(res as SendMailBatchResponse__Output)),
    ),
  );
  assert.equal(batch.results[0]?.code, 0);
  assert.equal(batch.results[1]?.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(batch.results[1]?.error_code, 'ESUPPRESSED');
  assert.ok(!rcpts.includes('blocked@example.com'), 'no RCPT for the suppressed address');
  assert.deepEqual(rcpts, ['a@example.com'], 'only the batch message that was not refused reached the relay');

  assert.equal((await s.get('blocked@EXAMPLE.com')).reason, 'SUPPRESSION_REASON_MANUAL');
  assert.equal((await s.remove('blocked@example.com')).address, 'b***@example.com');
  assert.equal((await expectGrpcError(s.remove('blocked@example.com'))).code, grpc.status.NOT_FOUND);
  assert.equal((await expectGrpcError(s.get('blocked@example.com'))).code, grpc.status.NOT_FOUND);
  assert.equal((await sendMail(svc, { to: 'blocked@example.com', subject: 's', body: 'b' })).status, 'SUCCESS');
  assert.ok(rcpts.includes('blocked@example.com'));

  // An internationalised domain added by hand matches the send, whose envelope holds it in punycode.
  await s.add({ address: 'ann@bücher.example' });
  const idn = await expectGrpcError(sendMail(svc, { to: 'ann@bücher.example', subject: 's', body: 'b' }));
  assert.equal(metadataValue(idn, 'mailroom-error'), 'ESUPPRESSED');
  assert.ok(!rcpts.some((r) => r.startsWith('ann@')), 'no RCPT for it');
});

test('ListSuppressions pages in a stable order, every address masked; bad input is INVALID_ARGUMENT and changes nothing', async (t) => {
  const { s } = await rig(t);
  for (let i = 0; i < 7; i++) await s.add({ address: `user${i}@example.com` });
  const seen: string[] = [];
  let token = '';
  for (let pages = 0; pages < 10; pages++) {
    const page = await s.list(3, token);
    seen.push(...page.suppressions.map((x) => x.address));
    token = page.next_page_token;
    if (token === '') break;
  }
  assert.equal(seen.length, 7);
  assert.ok(seen.every((a) => /^u\*\*\*@example\.com$/.test(a)), seen.join(' '));
  assert.equal((await expectGrpcError(s.list(5000))).code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await expectGrpcError(s.list(3, 'not a token!'))).code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await expectGrpcError(s.add({ address: 'not an address' }))).code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await expectGrpcError(s.add({ address: 'success@simulator.mailroom.invalid' }))).code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await s.list(100)).suppressions.length, 7);
});

test('with AUTH_TOKENS_FILE only a token marked admin manages the list; others are PERMISSION_DENIED', async (t) => {
  const ADMIN = `ops-${'o'.repeat(40)}`;
  const SHOP = `shop-${'s'.repeat(40)}`;
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-admin-')), 'tokens');
  writeFileSync(file, `ops ${ADMIN} mail.MailService,admin\nshop ${SHOP}\n`);
  const { s } = await rig(t, {}, { AUTH_TOKENS_FILE: file });
  const as = (token: string): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set('authorization', `Bearer ${token}`);
    return m;
  };
  const denied = await expectGrpcError(s.add({ address: 'x@example.com' }, as(SHOP)));
  assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
  assert.equal((await expectGrpcError(s.get('x@example.com', as(ADMIN)))).code, grpc.status.NOT_FOUND, 'nothing was added');
  assert.equal((await s.add({ address: 'x@example.com' }, as(ADMIN))).reason, 'SUPPRESSION_REASON_MANUAL');
  assert.equal((await expectGrpcError(s.get('x@example.com'))).code, grpc.status.UNAUTHENTICATED);
});
