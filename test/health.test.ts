// Health (grpc.health.v1) and reflection, as generic gRPC tools and
// Kubernetes probes use them, and a dead relay that says so at once: the
// port opens as soon as the first dials ended, health says NOT_SERVING, and
// calls fail within a second with the relay and its error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { check, healthClient, reflect } from './ops-clients.js';
import { closedPort, eventually, expectGrpcError, relayEnv, sendCode, sendMail, startService, startSmtp } from './helpers.js';
import { startProcess } from './process.js';
import { FaultPeer } from './fault-peer.js';

const SERVICES = ['', 'mail.MailService', 'mail.OtpService', 'mailroom.outbox'];

test('health: every service SERVING while the pool is up; Check and List need no credentials', async (t) => {
  const smtp = await startSmtp();
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '2' }));
  const health = healthClient(`127.0.0.1:${svc.service.port}`);
  t.after(async () => {
    health.close();
    await svc.close();
    await smtp.close();
  });
  for (const s of SERVICES) assert.equal(await check(health, s), 'SERVING', s);
  const listed = await new Promise<Record<string, { status: string }>>((resolve, reject) => health.List({}, (err, res) => (err ? reject(err) : resolve(res?.statuses ?? {}))));
  assert.deepEqual(Object.fromEntries(Object.entries(listed).map(([k, v]) => [k, v.status])), { '': 'SERVING', 'mail.MailService': 'SERVING', 'mail.OtpService': 'SERVING', 'mailroom.outbox': 'SERVING' });
  const unknown = await expectGrpcError(check(health, 'mail.Nope'));
  assert.equal(unknown.code, grpc.status.NOT_FOUND);
});

test('a relay that refuses connections: the port opens at once, health is NOT_SERVING, calls fail within 1 s naming the relay; it comes back by itself', async (t) => {
  const port = await closedPort();
  const started = Date.now();
  const svc = await startService(relayEnv(port, { WORKERS: '3', SMTP_BACKOFF_BASE_MS: '50', SMTP_BACKOFF_MAX_MS: '200' }));
  const bootMs = Date.now() - started;
  const health = healthClient(`127.0.0.1:${svc.service.port}`);
  let relay: Awaited<ReturnType<typeof startSmtp>> | undefined;
  t.after(async () => {
    health.close();
    await svc.close();
    await relay?.close();
  });
  assert.ok(bootMs < 2000, `listening after ${bootMs} ms, not after the connect and greeting timeouts`);
  for (const s of SERVICES.filter((name) => name !== 'mailroom.outbox')) assert.equal(await check(health, s), 'NOT_SERVING', s);
  // The outbox needs its store, not the relay: queued mail is still taken, and waits.
  assert.equal(await check(health, 'mailroom.outbox'), 'SERVING');

  for (const call of [() => sendMail(svc, { to: 'a@example.com', subject: 's', body: 'b' }), () => sendCode(svc, 'otp@example.com')]) {
    const t0 = Date.now();
    const err = await expectGrpcError(call());
    const ms = Date.now() - t0;
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
    assert.ok(ms < 1000, `failed after ${ms} ms`);
    assert.match(err.details, new RegExp(`^relay 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
    assert.doesNotMatch(err.details, /greeting/i, 'a refused connect is not a greeting failure');
    assert.deepEqual(err.metadata.get('mailroom-error'), ['EUNAVAILABLE']);
  }

  // Watch hears the relay come back.
  const watch = health.Watch({ service: 'mail.MailService' });
  const seen: string[] = [];
  const serving = new Promise<void>((resolve) => {
    watch.on('data', (m: { status: string }) => {
      seen.push(m.status);
      if (m.status === 'SERVING') resolve();
    });
  });
  watch.on('error', () => undefined);
  relay = await startSmtp({ port });
  await serving;
  watch.cancel();
  assert.deepEqual(seen, ['NOT_SERVING', 'SERVING']);
  assert.equal((await sendMail(svc, { to: 'a@example.com', subject: 'back', body: 'b' })).status, 'SUCCESS');
});

test('a handshake cut short is not a dead relay: calls wait for the re-dial; errors name the step that failed', async (t) => {
  // While `dropping`, every connection is closed before its greeting: TCP works, the handshake never does.
  let dropping = true;
  const peer = await FaultPeer.start({ script: (c) => (dropping && c.stage === 'connect' ? { drop: true } : undefined) });
  t.after(() => peer.close());
  const svc = await startService(relayEnv(peer.port, { WORKERS: '1', SMTP_BACKOFF_BASE_MS: '40', SMTP_BACKOFF_MAX_MS: '80', QUEUE_TIMEOUT_MS: '600' }));
  t.after(() => svc.close());
  const t0 = Date.now();
  const err = await expectGrpcError(sendMail(svc, { to: 'a@example.com', subject: 'waits', body: 'b' }));
  const waited = Date.now() - t0;
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.ok(waited >= 500, `it waited for the re-dials (${waited} ms), as after any drop`);
  assert.match(err.details, /within 600 ms: greeting: the SMTP relay closed the connection/);
  dropping = false;
  assert.equal((await sendMail(svc, { to: 'a@example.com', subject: 'through', body: 'b' })).status, 'SUCCESS');
});

test('Watch across SIGTERM: NOT_SERVING reaches the stream before the drain; the process exits 0', async (t) => {
  const smtp = await startSmtp();
  t.after(() => smtp.close());
  const child = await startProcess(relayEnv(smtp.port, { WORKERS: '1', SHUTDOWN_TIMEOUT_SECONDS: '2' }));
  t.after(() => {
    child.proc.kill('SIGKILL');
  });
  const health = healthClient(`127.0.0.1:${child.port}`);
  t.after(() => health.close());
  const streams = ['', 'mail.OtpService'].map((service) => {
    const stream = health.Watch({ service });
    const seen: string[] = [];
    stream.on('data', (m: { status: string }) => seen.push(m.status));
    const ended = new Promise<void>((resolve) => {
      stream.on('error', () => resolve());
      stream.on('end', () => resolve());
    });
    return { seen, ended };
  });
  await eventually(() => streams.every((s) => s.seen.length > 0), 10_000, 'each watch told the status');
  for (const s of streams) assert.deepEqual(s.seen, ['SERVING']);
  child.proc.kill('SIGTERM');
  await Promise.all(streams.map((s) => s.ended));
  for (const s of streams) assert.deepEqual(s.seen, ['SERVING', 'NOT_SERVING']);
  const { code } = await child.exited;
  assert.equal(code, 0);
  const order = child.logs.map((e) => e.message);
  assert.ok(order.indexOf('shutting down') >= 0 && order.indexOf('stopped') > order.indexOf('shutting down'));
});

test('reflection v1 and v1alpha list every service and describe the messages', async (t) => {
  const smtp = await startSmtp();
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1' }));
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  const address = `127.0.0.1:${svc.service.port}`;
  for (const version of ['v1', 'v1alpha'] as const) {
    const listed = await reflect(address, version, { list_services: '' });
    const names = listed.list_services_response?.service.map((s) => s.name) ?? [];
    for (const name of ['mail.MailService', 'mail.OtpService', 'grpc.health.v1.Health']) assert.ok(names.includes(name), `${version} lists ${name}: ${names.join(', ')}`);
    const described = await reflect(address, version, { file_containing_symbol: 'mail.MailService' });
    const files = described.file_descriptor_response?.file_descriptor_proto ?? [];
    assert.ok(files.length > 0, `${version} describes mail.MailService`);
    const text = Buffer.concat(files).toString('latin1');
    for (const part of ['SendEmailRequest', 'idempotency_key', 'SendEmailResponse', 'message_id']) assert.ok(text.includes(part), `${version}: ${part}`);
  }
});
