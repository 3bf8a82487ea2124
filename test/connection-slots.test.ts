// Connection slots cannot be hoarded: a connection that has made no
// successfully authenticated call is closed after GRPC_HANDSHAKE_TIMEOUT_MS
// (refused calls do not make it welcome), one address holds at most
// MAX_GRPC_CONNECTIONS_PER_PEER, and a connection whose calls keep failing
// authentication is closed after GRPC_MAX_AUTH_FAILURES. A caller with a
// valid token is served throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { relayEnv, startService, startSmtp, type RunningService } from './helpers.js';
import { frame } from './raw-grpc.js';

const TOKEN = `good-${'g'.repeat(40)}`;

async function service(t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string>): Promise<RunningService> {
  const smtp = await startSmtp();
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-slots-')), 'tokens');
  writeFileSync(file, `good ${TOKEN}\n`);
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', AUTH_TOKENS_FILE: file, ...env }));
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  return svc;
}

/** A session from `from` whose one call (no token) is refused, kept open; resolves with it once the refusal came. */
function refusedSession(port: number, from: string): Promise<{ session: ClientHttp2Session; closed: Promise<number> }> {
  const opened = Date.now();
  const session = http2Connect(`http://127.0.0.1:${port}`, { createConnection: () => tcpConnect({ host: '127.0.0.1', port, localAddress: from }) });
  session.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now() - opened)));
  const body = loadMailProto().mail.OtpService.service.ValidateCode.requestSerialize({ email: 'a@example.com', otpCode: '123456' }) as Buffer;
  const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/mail.OtpService/ValidateCode', 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    stream.once('response', (headers) => {
      if (Number(headers['grpc-status']) !== grpc.status.UNAUTHENTICATED) reject(new Error(`expected UNAUTHENTICATED, got ${String(headers['grpc-status'])}`));
      else resolve({ session, closed });
    });
    stream.resume();
    stream.end(frame(body));
  });
}

function silent(port: number, from: string): Promise<number> {
  const opened = Date.now();
  const sock: Socket = tcpConnect({ host: '127.0.0.1', port, localAddress: from });
  sock.on('error', () => undefined);
  return new Promise((resolve) => sock.once('close', () => resolve(Date.now() - opened)));
}

function goodClient(svc: RunningService) {
  const client = new (loadMailProto().mail.OtpService)(`127.0.0.1:${svc.service.port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${TOKEN}`);
  const call = (): Promise<number> =>
    new Promise((resolve) => client.ValidateCode({ email: 'a@example.com', otpCode: '123456' }, metadata, { deadline: Date.now() + 3000 }, (err) => resolve(err ? err.code : grpc.status.OK)));
  return { call, close: () => client.close() };
}

test('100 sessions that keep one refused call each and a flood of silent sockets from one address: all closed or refused in time, a caller with a token served throughout', async (t) => {
  // Long enough that a socket refused at once (closed within HANDSHAKE / 2)
  // cannot be mistaken for one held to the timeout even when another test
  // run holds the other core and 300 connects queue behind each other.
  const HANDSHAKE = 2000;
  // Closed by the handshake timeout, not the 300 s idle timeout: the slack is
  // for a loaded machine, where 400 sessions take seconds to set up.
  const CLOSED_WITHIN = HANDSHAKE + 5000;
  const svc = await service(t, { MAX_GRPC_CONNECTIONS: '200', MAX_GRPC_CONNECTIONS_PER_PEER: '60', GRPC_HANDSHAKE_TIMEOUT_MS: String(HANDSHAKE) });
  const port = svc.service.port;
  const good = goodClient(svc);
  t.after(() => good.close());
  assert.equal(await good.call(), grpc.status.OK);

  const hoarders = await Promise.all(Array.from({ length: 100 }, (_, i) => refusedSession(port, i % 2 === 0 ? '127.0.0.10' : '127.0.0.11')));
  const flood = Array.from({ length: 300 }, () => silent(port, '127.0.0.12'));
  // Throughout the attack: the caller's own connection, and a fresh one, are served.
  const during: number[] = [];
  const until = Date.now() + HANDSHAKE + 300;
  while (Date.now() < until) {
    during.push(await good.call());
    await new Promise((r) => setTimeout(r, 20));
  }
  const fresh = goodClient(svc);
  during.push(await fresh.call());
  fresh.close();
  assert.deepEqual([...new Set(during)], [grpc.status.OK], 'every call of the caller with a token was answered');

  const lived = await Promise.all(hoarders.map((h) => h.closed));
  for (const ms of lived) assert.ok(ms < CLOSED_WITHIN, `a session with only a refused call lived ${ms} ms`);
  const silentLived = await Promise.all(flood);
  const atOnce = silentLived.filter((ms) => ms < HANDSHAKE / 2).length;
  assert.ok(atOnce >= 240, `${atOnce} of 300 silent sockets from one address were refused at once (60 may be held)`);
  for (const ms of silentLived) assert.ok(ms < CLOSED_WITHIN, `a silent socket lived ${ms} ms`);
  assert.equal(await good.call(), grpc.status.OK);
});

test('a connection whose calls fail authentication GRPC_MAX_AUTH_FAILURES times is closed', async (t) => {
  const svc = await service(t, { GRPC_MAX_AUTH_FAILURES: '3', GRPC_HANDSHAKE_TIMEOUT_MS: '30000' });
  const { session, closed } = await refusedSession(svc.service.port, '127.0.0.20');
  const body = loadMailProto().mail.OtpService.service.ValidateCode.requestSerialize({ email: 'a@example.com', otpCode: '123456' }) as Buffer;
  const refuse = (): Promise<void> =>
    new Promise((resolve) => {
      const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/mail.OtpService/ValidateCode', 'content-type': 'application/grpc', te: 'trailers', authorization: 'Bearer wrong-token' });
      stream.on('error', () => resolve());
      stream.on('close', () => resolve());
      stream.resume();
      stream.end(frame(body));
    });
  await refuse();
  await refuse();
  const ms = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 3000))]);
  assert.ok(ms >= 0, 'closed after its third refused call, long before the handshake timeout');
});
