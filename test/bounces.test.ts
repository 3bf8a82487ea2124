// Delivery reports end to end: a real Postfix that cannot deliver to a
// recipient sends its own DSN to the message's return path, through
// mailroom's bounce listener; forged reports change nothing; hard bounces
// and complaints (RFC 5965's sample, Yahoo's ARF) suppress, soft bounces
// only record. Everything through the public surface: gRPC, SMTP.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import nodemailer from 'nodemailer';
import { closedPort, expectGrpcError, metadataValue, relayEnv, sendMail, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';
import { getMessage, queue, until, watch } from './outbox-client.js';
import { startPostfix, type PostfixPeer } from './postfix.js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { SuppressionServiceClient } from '../src/generated/mail/SuppressionService.js';
import type { Suppression__Output } from '../src/generated/mail/Suppression.js';

const DOMAIN = 'bounces.example.test';
const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../../test/fixtures/reports/${name}`, import.meta.url)), 'utf8');

function suppressionClient(svc: RunningService): SuppressionServiceClient {
  return new (loadMailProto().mail.SuppressionService)(`127.0.0.1:${svc.service.port}`, grpc.credentials.createInsecure());
}

function getSuppression(client: SuppressionServiceClient, address: string): Promise<Suppression__Output> {
  return new Promise((resolve, reject) => client.GetSuppression({ address }, (err, res) => (err ? reject(err) : resolve(res as Suppression__Output))));
}

/** Mails a report to the listener as an MTA would: null sender, one recipient. */
async function report(port: number, to: string, raw: string): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({ envelope: { from: '', to: [to] }, raw });
  } finally {
    transport.close();
  }
}

function dsn(returnPath: string, recipient: string, action: string, status: string): string {
  return [
    'From: MAILER-DAEMON@mx.example.net',
    `To: <${returnPath}>`,
    'Subject: Delivery Status Notification',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    '--b1',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    `Final-Recipient: rfc822; ${recipient}`,
    `Action: ${action}`,
    `Status: ${status}`,
    `Diagnostic-Code: smtp; ${status.startsWith('5') ? '550' : '451'} ${status} <${recipient}> said no`,
    '',
    '--b1--',
    '',
  ].join('\r\n');
}

test('a real Postfix bounces a queued message (the cc, 5.1.1) and a SYNC one back through the listener: BOUNCED, then suppressed', async () => {
  const bouncePort = await closedPort();
  const postfix: PostfixPeer = await startPostfix(await closedPort(), bouncePort);
  let svc: RunningService | undefined;
  try {
    svc = await startService(relayEnv(postfix.port, { BOUNCE_DOMAIN: DOMAIN, BOUNCE_PORT: String(bouncePort), BOUNCE_HOST: '127.0.0.1', WORKERS: '2' }));
    const w = watch(svc);
    const queued = await queue(svc, { to: 'ok@example.org', cc: ['nobody@nouser.test'], subject: 'q', body: 'b' });
    const bounced = await until(svc, queued.message_id, 'MESSAGE_STATE_BOUNCED', 30_000);
    assert.equal(bounced.bounces.length, 1);
    const b = bounced.bounces[0]!;
    assert.equal(b.recipient_index, 1, 'the cc: position among to, cc, bcc');
    assert.equal(b.kind, 'BOUNCE_KIND_HARD');
    assert.equal(b.status, '5.1.1');
    assert.ok(!b.diagnostic.includes('nobody@'), `addresses masked: ${b.diagnostic}`);
    await w.until((events) => events.some((e) => e.status?.message_id === queued.message_id && e.status.state === 'MESSAGE_STATE_BOUNCED'));
    w.close();

    const sync = await sendMail(svc, { to: 'gone@nouser.test', subject: 's', body: 'b' });
    assert.equal(sync.state, 'MESSAGE_STATE_SENT', 'Postfix took it (250); its bounce comes later');
    assert.equal((await until(svc, sync.message_id, 'MESSAGE_STATE_BOUNCED', 30_000)).bounces[0]?.status, '5.1.1');

    // Both addresses are suppressed now: the next send is refused before any SMTP.
    const err = await expectGrpcError(sendMail(svc, { to: 'ok@example.org', bcc: ['Nobody@NoUser.test'], subject: 's', body: 'b' }));
    assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(metadataValue(err, 'mailroom-error'), 'ESUPPRESSED');
    assert.match(err.details, /recipient 1 /);
    const client = suppressionClient(svc);
    const entry = await getSuppression(client, 'gone@nouser.test');
    client.close();
    assert.equal(entry.reason, 'SUPPRESSION_REASON_BOUNCE');
    assert.equal(entry.message_id, sync.message_id);
    assert.equal(entry.address, 'g***@nouser.test');
  } finally {
    await svc?.close();
    await postfix.stop();
  }
});

let peer: SmtpPeer;
let svc: RunningService;
let listener: number;

before(async () => {
  peer = await startSmtp();
  svc = await startService(relayEnv(peer.port, { BOUNCE_DOMAIN: DOMAIN, BOUNCE_PORT: '0', BOUNCE_HOST: '127.0.0.1', WORKERS: '1' }));
  listener = svc.service.bouncePort as number;
});

after(async () => {
  await svc.close();
  await peer.close();
});

/** Sends through the recording peer; the message's id and the return path it went out with. */
async function sent(to: string, extra: { cc?: string[] } = {}): Promise<{ id: string; returnPath: string }> {
  const before = peer.messages.length;
  const res = await sendMail(svc, { to, ...extra, subject: 's', body: 'b' });
  const [m] = (await peer.waitForMessages(before + 1)).slice(before);
  return { id: res.message_id, returnPath: m!.from };
}

test('the envelope sender is b+<token>@BOUNCE_DOMAIN; the From header does not change', async () => {
  const { returnPath } = await sent('one@example.net');
  assert.match(returnPath, /^b\+[a-z2-7]{26}@bounces\.example\.test$/);
  assert.match(peer.messages.at(-1)!.raw, /^From: sender@example\.com\r$/m);
});

test('forged reports change nothing: a bad token, a token whose MAC does not verify, a recipient the message never had, a non-report, another domain', async () => {
  const { id, returnPath } = await sent('victim@example.net');
  const token = returnPath.slice(2, 28);
  // One character of the MAC changed; and the same token spelt with the last character's spare bits set.
  const flipped = `b+${token.slice(0, 20)}${token[20] === 'a' ? 'b' : 'a'}${token.slice(21)}@${DOMAIN}`;
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const respelt = `b+${token.slice(0, 25)}${alphabet[alphabet.indexOf(token[25] as string) | 1]}@${DOMAIN}`;
  await report(listener, `b+${'a'.repeat(26)}@${DOMAIN}`, dsn(`b+x@${DOMAIN}`, 'victim@example.net', 'failed', '5.1.1'));
  await report(listener, flipped, dsn(flipped, 'victim@example.net', 'failed', '5.1.1'));
  if (respelt !== returnPath) await report(listener, respelt, dsn(respelt, 'victim@example.net', 'failed', '5.1.1'));
  await report(listener, returnPath, dsn(returnPath, 'someone-else@example.net', 'failed', '5.1.1'));
  await report(listener, returnPath, 'From: a@b.c\r\nSubject: hello\r\n\r\nnot a report\r\n');
  await assert.rejects(report(listener, 'postmaster@example.net', dsn(returnPath, 'victim@example.net', 'failed', '5.1.1')), /550/);
  const status = await getMessage(svc, id);
  assert.equal(status.state, 'MESSAGE_STATE_SENT');
  assert.equal(status.bounces.length, 0);
  const again = await sendMail(svc, { to: 'victim@example.net', subject: 's', body: 'b' });
  assert.equal(again.status, 'SUCCESS', 'not suppressed');
});

test('a soft bounce is recorded and leaves the state; a hard one moves it to BOUNCED and suppresses', async () => {
  const { id, returnPath } = await sent('soft@example.net', { cc: ['hard@example.net'] });
  await report(listener, returnPath, dsn(returnPath, 'soft@example.net', 'delayed', '4.4.1'));
  const soft = await getMessage(svc, id);
  assert.equal(soft.state, 'MESSAGE_STATE_SENT');
  assert.deepEqual(soft.bounces.map((b) => [b.recipient_index, b.kind, b.status]), [[0, 'BOUNCE_KIND_SOFT', '4.4.1']]);
  await report(listener, returnPath, dsn(returnPath, 'hard@example.net', 'failed', '5.2.1'));
  const hard = await getMessage(svc, id);
  assert.equal(hard.state, 'MESSAGE_STATE_BOUNCED');
  assert.deepEqual(hard.bounces.map((b) => [b.recipient_index, b.kind]), [[0, 'BOUNCE_KIND_SOFT'], [1, 'BOUNCE_KIND_HARD']]);
  assert.equal((await sendMail(svc, { to: 'soft@example.net', subject: 's', body: 'b' })).status, 'SUCCESS');
  const err = await expectGrpcError(sendMail(svc, { to: 'hard@example.net', subject: 's', body: 'b' }));
  assert.equal(metadataValue(err, 'mailroom-error'), 'ESUPPRESSED');
});

for (const [name, redacted] of [
  ['rfc5965-sample.eml', false],
  ['yahoo-cfl.eml', true],
] as const) {
  test(`an ARF complaint (${name}) to the feedback address makes the message COMPLAINED and suppresses its recipient`, async () => {
    const recipient = `fbl-${name.slice(0, 5)}@example.net`;
    const { id, returnPath } = await sent(recipient);
    const arf = fixture(name).replaceAll('{{RETURN_PATH}}', returnPath).replaceAll('{{RECIPIENT}}', recipient).replace(/\r?\n/g, '\r\n');
    // Feedback loops mail their own address, not the return path: the token is read from the report.
    await report(listener, `fbl@${DOMAIN}`, redacted ? arf.replace(/^Original-Rcpt-To: .*\r\n/m, '') : arf);
    const status = await getMessage(svc, id);
    assert.equal(status.state, 'MESSAGE_STATE_COMPLAINED');
    assert.equal(status.bounces[0]?.kind, 'BOUNCE_KIND_COMPLAINT');
    const err = await expectGrpcError(sendMail(svc, { to: recipient, subject: 's', body: 'b' }));
    assert.equal(metadataValue(err, 'mailroom-error'), 'ESUPPRESSED');
  });
}
