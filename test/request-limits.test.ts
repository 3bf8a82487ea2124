// What a caller can make mailroom spend: every input gets INVALID_ARGUMENT
// or RESOURCE_EXHAUSTED in proportion to its size and at once, never
// INTERNAL or a freeze; connections and streams that never finish are
// closed; a request that does not decode is the caller's fault.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { frame, rawCall as rawCallTo } from './raw-grpc.js';
import { expectGrpcError, metadataValue, relayEnv, sendMail, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp();
  svc = await startService(
    relayEnv(smtp.port, {
      WORKERS: '1',
      MAX_GRPC_CONNECTIONS: '4',
      GRPC_HANDSHAKE_TIMEOUT_MS: '300',
      GRPC_RECEIVE_TIMEOUT_MS: '300',
      GRPC_IDLE_TIMEOUT_MS: '1000',
    }),
  );
});

after(async () => {
  await svc.close();
  await smtp.close();
});

const address = (): string => `127.0.0.1:${svc.service.port}`;
const rawCall = (path: string, frames: Buffer, end: boolean) => rawCallTo(address(), path, frames, end);

/** Resolves with how long the socket lived, once the server closed it. */
function closedIn(sock: ReturnType<typeof tcpConnect>): Promise<number> {
  const opened = Date.now();
  return new Promise((resolve) => {
    sock.on('error', () => undefined);
    sock.once('close', () => resolve(Date.now() - opened));
  });
}

test('a request that does not decode is INVALID_ARGUMENT, not INTERNAL', async () => {
  // field 1 (to), length-delimited, its length varint cut short
  const answer = await rawCall('/mail.MailService/SendMail', frame(Buffer.from([0x0a, 0xff])), true);
  assert.equal(answer.status, grpc.status.INVALID_ARGUMENT, answer.message);
  assert.match(answer.message, /does not decode/);
});

test('a string field that is not UTF-8 is INVALID_ARGUMENT naming the field, in any method; nothing is sent', async () => {
  const str = (field: number, bytes: Buffer): Buffer => Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes]);
  const ascii = (field: number, text: string): Buffer => str(field, Buffer.from(text, 'latin1'));
  const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1: 0xE9 alone is not UTF-8
  const mails = smtp.messages.length;
  const cases: [string, Buffer, RegExp][] = [
    ['/mail.MailService/SendMail', Buffer.concat([ascii(1, 'a@example.com'), str(2, latin1), ascii(3, 'b')]), /^subject: must be UTF-8/],
    ['/mail.MailService/SendMail', Buffer.concat([ascii(1, 'a@example.com'), ascii(2, 's'), str(3, Buffer.from([0x62, 0xc3]))]), /^body: must be UTF-8/],
    ['/mail.MailService/SendMail', Buffer.concat([ascii(1, 'a@example.com'), ascii(5, 'c@example.com'), str(5, latin1), ascii(3, 'b')]), /^cc\[1\]: must be UTF-8/],
    ['/mail.OtpService/ValidateCode', Buffer.concat([str(1, latin1), ascii(2, '123456')]), /^email: must be UTF-8/],
  ];
  for (const [path, body, message] of cases) {
    const answer = await rawCall(path, frame(body), true);
    assert.equal(answer.status, grpc.status.INVALID_ARGUMENT, answer.message);
    assert.match(answer.message, message);
  }
  // Valid UTF-8, U+FFFD itself included, still goes.
  const fine = await rawCall('/mail.MailService/SendMail', frame(Buffer.concat([ascii(1, 'a@example.com'), str(2, Buffer.from('caf\u00e9 \ufffd', 'utf8')), ascii(3, 'b')])), true);
  assert.equal(fine.status, grpc.status.OK, fine.message);
  assert.equal(smtp.messages.length, mails + 1, 'only the valid one was sent');
});

test('a request whose body never finishes arriving ends DEADLINE_EXCEEDED after GRPC_RECEIVE_TIMEOUT_MS', async () => {
  // It claims 100,000 bytes and sends 10.
  const answer = await rawCall('/mail.MailService/SendMail', frame(Buffer.alloc(10), 100_000), false);
  assert.equal(answer.status, grpc.status.DEADLINE_EXCEEDED, answer.message);
  assert.ok(answer.ms >= 250 && answer.ms < 3000, `ended after ${answer.ms} ms`);
});

test('a connection that starts no call is closed after GRPC_HANDSHAKE_TIMEOUT_MS; beyond MAX_GRPC_CONNECTIONS one is closed at once', async () => {
  // Six at once against a cap of four (earlier tests' connections may still be closing): the first four are held, the rest refused.
  const lived = await Promise.all(Array.from({ length: 6 }, () => closedIn(tcpConnect(svc.service.port, '127.0.0.1'))));
  const refused = lived.filter((ms) => ms < 200);
  const held = lived.filter((ms) => ms >= 200);
  assert.ok(refused.length >= 2, `refused at once: ${JSON.stringify(lived)}`);
  assert.ok(held.length >= 1 && held.length <= 4, `held: ${JSON.stringify(lived)}`);
  for (const ms of held) assert.ok(ms >= 250 && ms < 3000, `a silent connection lived ${ms} ms`);
  // Room again: a real call goes through.
  assert.equal((await sendMail(svc, { to: 'a@example.com', subject: 'room', body: 'b' })).status, 'SUCCESS');
});

test('a connection that stalls in its handshake is closed after GRPC_HANDSHAKE_TIMEOUT_MS; a client that connects early and calls late still gets its answer', async () => {
  const stalled = tcpConnect(svc.service.port, '127.0.0.1');
  stalled.write('PRI * HTTP/2.0\r\n'); // a third of the HTTP/2 preface, then nothing
  const lived = await closedIn(stalled);
  assert.ok(lived >= 250 && lived < 3000, `a stalled handshake lived ${lived} ms`);
  // Its channel connects now; its first call comes later than GRPC_HANDSHAKE_TIMEOUT_MS, after that connection was closed.
  const client = new (loadMailProto().mail.MailService)(address(), grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 2000, (err) => (err ? reject(err) : resolve())));
  await new Promise((r) => setTimeout(r, 500));
  const res = await new Promise<{ status: string } | undefined>((resolve, reject) =>
    client.SendMail({ to: 'a@example.com', subject: 'late', body: 'b' }, (err: grpc.ServiceError | null, r?: { status: string }) => (err ? reject(err) : resolve(r))),
  );
  assert.equal(res?.status, 'SUCCESS');
  client.close();
});

test('an idle connection is closed after GRPC_IDLE_TIMEOUT_MS; the client reconnects by itself', async () => {
  const session = http2Connect(`http://${address()}`);
  session.on('error', () => undefined);
  const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/mail.OtpService/ValidateCode', 'content-type': 'application/grpc', te: 'trailers' });
  stream.resume();
  stream.end(frame(Buffer.alloc(0)));
  const opened = Date.now();
  await new Promise((resolve) => session.once('goaway', resolve));
  const ms = Date.now() - opened;
  session.destroy();
  assert.ok(ms >= 800 && ms < 5000, `GOAWAY after ${ms} ms idle`);
  assert.equal((await sendMail(svc, { to: 'a@example.com', subject: 'again', body: 'b' })).status, 'SUCCESS');
});

test('oversized and huge inputs are refused at once with a status in proportion', async (t) => {
  const cases: [string, Record<string, unknown>, grpc.status][] = [
    ['a 60 MB subject', { subject: 's'.repeat(60 * 1_048_576) }, grpc.status.RESOURCE_EXHAUSTED],
    ['200,000 addresses in to', { to: Array.from({ length: 200_000 }, (_, i) => `u${i}@example.com`).join(',') }, grpc.status.RESOURCE_EXHAUSTED],
    ['5,000 cc entries', { cc: Array.from({ length: 5000 }, (_, i) => `c${i}@example.com`) }, grpc.status.INVALID_ARGUMENT],
    ['a 1 MB display name', { to: `"${'n'.repeat(1_048_576)}" <a@example.com>` }, grpc.status.INVALID_ARGUMENT],
    ['a 2 MB display name', { to: `"${'n'.repeat(2 * 1_048_576)}" <a@example.com>` }, grpc.status.RESOURCE_EXHAUSTED],
    ['a display name of 300 characters', { to: `"${'n'.repeat(300)}" <a@example.com>` }, grpc.status.INVALID_ARGUMENT],
    ['60 recipients in one to', { to: Array.from({ length: 60 }, (_, i) => `u${i}@example.com`).join(',') }, grpc.status.INVALID_ARGUMENT],
  ];
  const mails = smtp.messages.length;
  // A service of its own, at the default idle timeout: on this file's, 1 s,
  // a connection idle while these inputs are built (that long on a busy
  // machine) gets the server's GOAWAY, which races the next stream; grpc-js
  // retries a refused stream by itself, but not one larger than its retry
  // buffer, and the call would fail for what the test does, not the service.
  // Attachments at their smallest limit keep the receive limit (which follows MAX_MESSAGE_BYTES) under 2 MB.
  const own = await startService(relayEnv(smtp.port, { WORKERS: '1', MAX_MESSAGE_BYTES: '65536' }));
  t.after(() => own.close());
  for (const [what, fields, status] of cases) {
    const started = Date.now();
    const err = await expectGrpcError(sendMail(own, { to: 'a@example.com', subject: 's', body: 'b', ...fields }, { deadline: Date.now() + 20_000 }));
    assert.equal(err.code, status, `${what}: ${err.details}`);
    assert.ok(Date.now() - started < 2000, `${what}: answered in ${Date.now() - started} ms`);
    // Refused by grpc-js before anything is decoded, or by mailroom: either way the catalogue's code says why.
    assert.equal(metadataValue(err, 'mailroom-error'), status === grpc.status.RESOURCE_EXHAUSTED ? 'ETOOLARGE' : 'EINVALID', what);
  }
  // A batch over the receive limit, the same.
  const big = await expectGrpcError(
    new Promise((resolve, reject) =>
      own.mail.SendMailBatch({ messages: Array.from({ length: 40 }, () => ({ to: 'a@example.com', subject: 's', body: 'x'.repeat(60_000) })) }, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, res) =>
        err !== null ? reject(err) : resolve(res),
      ),
    ),
  );
  assert.equal(big.code, grpc.status.RESOURCE_EXHAUSTED, big.details);
  assert.equal(metadataValue(big, 'mailroom-error'), 'ETOOLARGE');
  assert.equal(smtp.messages.length, mails, 'nothing was sent');
});

test('many problems: the first 20 and a count, so that the status reaches the caller', async () => {
  const cc = Array.from({ length: 45 }, (_, i) => `not an address ${i}`);
  const err = await expectGrpcError(sendMail(svc, { to: 'a@example.com', subject: 's', body: 'b', cc }, { deadline: Date.now() + 5000 }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /; and 25 more$/);
  assert.ok(err.details.length < 4000, `${err.details.length} characters`);
});

test('the longest display names still give header lines within 998 characters', async () => {
  const name = `${'Ω'.repeat(128)}${'n'.repeat(128)}`;
  const to = Array.from({ length: 3 }, (_, i) => `"${name}" <u${i}@example.com>`).join(', ');
  const res = await sendMail(svc, { to, cc: [`"${'q'.repeat(256)}" <c@example.com>`], reply_to: `"${'r, '.repeat(85)}" <r@example.com>`, subject: 'S'.repeat(998), body: 'b' });
  assert.equal(res.status, 'SUCCESS');
  const raw = smtp.messages.at(-1)?.raw ?? '';
  const header = raw.slice(0, raw.indexOf('\r\n\r\n'));
  for (const line of header.split('\r\n')) assert.ok(line.length <= 998, `a header line of ${line.length} characters`);
});
