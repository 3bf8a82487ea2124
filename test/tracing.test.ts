// Traces end to end: the service as a process with OTEL_EXPORTER_OTLP_* set,
// a real OTLP/HTTP receiver on loopback (a few lines of node:http taking
// http/json), a real SMTP peer and gRPC client. The structure: a caller's
// traceparent is the SERVER span's parent; SYNC: SERVER → queue → smtp send;
// QUEUED: a PRODUCER at acceptance, and after a restart a CONSUMER linked to
// it with the SMTP span under it; SendCode: SERVER → the OTP work → smtp
// send; ValidateCode: SERVER → the check. Health is not traced, logs name
// the trace, and nothing a caller sent (address, subject, body, code,
// token) is in any span.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { codeFromMail, eventually, freshOutbox, otlpEnv, relayEnv, startSmtp } from './helpers.js';
import { startProcess, type ServiceProcess } from './process.js';
import { check, healthClient } from './ops-clients.js';
import { startRedis } from './redis-server.js';
import { Redis } from 'ioredis';

interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
  readonly links?: { traceId: string; spanId: string }[];
}

const KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };
const TOKEN = `tracing-token-${'t'.repeat(40)}`;

/** An OTLP/HTTP receiver: every body kept as text, every span parsed. */
async function receiver(): Promise<{ server: Server; url: string; bodies: string[]; spans: OtlpSpan[] }> {
  const bodies: string[] = [];
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      bodies.push(body);
      const parsed = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const r of parsed.resourceSpans) for (const s of r.scopeSpans) spans.push(...s.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, spans };
}

const attr = (s: OtlpSpan, key: string): string | undefined => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : String(v.stringValue ?? v.intValue);
};

function bearer(traceparent?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${TOKEN}`);
  if (traceparent !== undefined) m.set('traceparent', traceparent);
  return m;
}

test('traces: SYNC, QUEUED across a restart, SendCode; health untraced; logs carry the ids; no secret in any span', async (t) => {
  const otlp = await receiver();
  const smtp = await startSmtp();
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-tracing-'));
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `shop ${TOKEN}\n`);
  const outbox = freshOutbox();
  const env = relayEnv(smtp.port, { WORKERS: '1', AUTH_TOKENS_FILE: tokens, OUTBOX_PATH: outbox, LOG_LEVEL: 'debug', OTEL_SERVICE_NAME: 'mailroom-test', ...otlpEnv(otlp.url) });
  let svc: ServiceProcess = await startProcess(env, { timeoutMs: 20_000 });
  t.after(async () => {
    svc.proc.kill('SIGKILL');
    await smtp.close();
    await new Promise((r) => otlp.server.close(r));
  });
  const clientOf = (port: number) => {
    const proto = loadMailProto();
    return { mail: new proto.mail.MailService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()), otp: new proto.mail.OtpService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) };
  };
  let c = clientOf(svc.port);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const callerSpan = '00f067aa0ba902b7';

  // SYNC, under the caller's trace.
  const sent = await new Promise<{ message_id: string }>((resolve, reject) =>
    c.mail.SendMail({ to: 'secret-rcpt@example.net', subject: 'secret subject', body: 'secret body' }, bearer(`00-${traceId}-${callerSpan}-01`), (e, r) => (e ? reject(e) : resolve(r as { message_id: string }))),
  );
  const server = await eventually(() => otlp.spans.find((s) => s.kind === KIND.SERVER && s.traceId === traceId && s.name.endsWith('SendMail')), 10_000, 'the SendMail SERVER span');
  assert.equal(server.parentSpanId, callerSpan, "the caller's traceparent is its parent");
  const queue = await eventually(() => otlp.spans.find((s) => s.name === 'mailroom queue' && s.parentSpanId === server.spanId), 10_000, 'the queue span under it');
  const smtpSpan = await eventually(() => otlp.spans.find((s) => s.name === 'smtp send' && s.parentSpanId === queue.spanId), 10_000, 'the SMTP span under the queue span');
  assert.equal(smtpSpan.kind, KIND.CLIENT);
  assert.equal(attr(smtpSpan, 'server.address'), '127.0.0.1');
  assert.equal(attr(smtpSpan, 'server.port'), String(smtp.port));
  assert.equal(attr(smtpSpan, 'network.protocol.name'), 'smtp');
  assert.equal(attr(smtpSpan, 'smtp.response.status_code'), '250');
  assert.ok(sent.message_id !== '');
  // The debug 'call' line was written inside the SERVER span.
  assert.ok(svc.logs.some((l) => l.message === 'call' && l.trace_id === traceId), 'a log line carries trace_id');

  // QUEUED, due in a while; the service stops before it is due and a new one delivers it.
  const queuedTrace = 'aaf92f3577b34da6a3ce929d0e0e4736';
  const later = Date.now() + 2500;
  const queued = await new Promise<{ message_id: string }>((resolve, reject) =>
    c.mail.SendMail(
      { to: 'secret-queued@example.net', subject: 'secret subject', body: 'secret body', delivery: 'DELIVERY_QUEUED', send_at: { seconds: String(Math.floor(later / 1000)), nanos: (later % 1000) * 1e6 } },
      bearer(`00-${queuedTrace}-${callerSpan}-01`),
      (e, r) => (e ? reject(e) : resolve(r as { message_id: string })),
    ),
  );
  const producer = await eventually(() => otlp.spans.find((s) => s.kind === KIND.PRODUCER && s.traceId === queuedTrace), 10_000, 'the PRODUCER span');
  const queuedServer = otlp.spans.find((s) => s.kind === KIND.SERVER && s.traceId === queuedTrace);
  assert.equal(producer.parentSpanId, queuedServer?.spanId, 'the PRODUCER span is under the SERVER span');
  c.mail.close();
  c.otp.close();
  svc.proc.kill('SIGTERM');
  assert.equal((await svc.exited).code, 0);
  svc = await startProcess(env, { timeoutMs: 20_000 });
  c = clientOf(svc.port);
  await smtp.waitForMessages(2, 15_000);
  const consumer = await eventually(() => otlp.spans.find((s) => s.kind === KIND.CONSUMER && s.links?.some((l) => l.spanId === producer.spanId && l.traceId === queuedTrace)), 15_000, 'a CONSUMER span linked to the PRODUCER, after the restart');
  const deliveryQueue = await eventually(() => otlp.spans.find((s) => s.name === 'mailroom queue' && s.parentSpanId === consumer.spanId), 10_000, 'the queue span under the CONSUMER');
  await eventually(() => otlp.spans.find((s) => s.name === 'smtp send' && s.parentSpanId === deliveryQueue.spanId), 10_000, 'the SMTP span under it');
  assert.ok(queued.message_id !== '');

  // SendCode: SERVER → the OTP work → the code mail's SMTP span, one trace.
  const codeTrace = 'bbf92f3577b34da6a3ce929d0e0e4736';
  await new Promise((resolve, reject) => c.otp.SendCode({ email: 'secret-code@example.net' }, bearer(`00-${codeTrace}-${callerSpan}-01`), (e, r) => (e ? reject(e) : resolve(r))));
  const code = await codeFromMail(smtp, 'secret-code@example.net');
  const otpWork = await eventually(() => otlp.spans.find((s) => s.traceId === codeTrace && s.name === 'mailroom otp send-code'), 10_000, 'the OTP span');
  const codeServer = otlp.spans.find((s) => s.traceId === codeTrace && s.kind === KIND.SERVER);
  assert.equal(otpWork.parentSpanId, codeServer?.spanId);
  await eventually(() => otlp.spans.find((s) => s.traceId === codeTrace && s.name === 'smtp send'), 10_000, "the code mail's SMTP span in the same trace");
  // ValidateCode: SERVER → the check (batched with others in the OTP actor, a span of its own all the same).
  const checkTrace = 'b2f92f3577b34da6a3ce929d0e0e4736';
  await new Promise((resolve, reject) => c.otp.ValidateCode({ email: 'secret-code@example.net', otpCode: code }, bearer(`00-${checkTrace}-${callerSpan}-01`), (e, r) => (e ? reject(e) : resolve(r))));
  const checkSpan = await eventually(() => otlp.spans.find((s) => s.traceId === checkTrace && s.name === 'mailroom otp check'), 10_000, 'the check span');
  assert.equal(checkSpan.parentSpanId, otlp.spans.find((s) => s.traceId === checkTrace && s.kind === KIND.SERVER)?.spanId, 'under the ValidateCode SERVER span');

  // A delivery report (the simulator's bounce of a SYNC message): a span linked to the message's trace, with an event.
  const bounceTrace = 'ccf92f3577b34da6a3ce929d0e0e4736';
  await new Promise((resolve, reject) =>
    c.mail.SendMail({ to: 'bounce@simulator.mailroom.invalid', subject: 'secret subject', body: 'secret body' }, bearer(`00-${bounceTrace}-${callerSpan}-01`), (e, r) => (e ? reject(e) : resolve(r))),
  );
  const report = await eventually(() => otlp.spans.find((s) => s.name === 'mailroom delivery report' && s.links?.some((l) => l.traceId === bounceTrace)), 10_000, "the report's span, linked to the message's trace");
  assert.equal(report.kind, KIND.CONSUMER);

  // Health is not traced.
  const health = healthClient(`127.0.0.1:${svc.port}`);
  await check(health, '');
  health.close();
  // A traced call after it: once its span is exported, a health span ended before it would have been too.
  const afterTrace = 'ddf92f3577b34da6a3ce929d0e0e4736';
  await new Promise((resolve, reject) => c.mail.SendMail({ to: 'success@simulator.mailroom.invalid', subject: 's', body: 'b' }, bearer(`00-${afterTrace}-${callerSpan}-01`), (e, r) => (e ? reject(e) : resolve(r))));
  await eventually(() => otlp.spans.some((s) => s.traceId === afterTrace && s.kind === KIND.SERVER), 10_000, 'the span of the call after the health check');
  assert.ok(!otlp.spans.some((s) => /Health|Reflection/.test(s.name)), 'no health or reflection span');
  c.mail.close();
  c.otp.close();

  // Nothing a caller sent, in any span of the run.
  const all = otlp.bodies.join('\n');
  for (const secret of ['secret-rcpt', 'secret-queued', 'secret-code', 'secret subject', 'secret body', code, TOKEN, 'example.net']) assert.ok(!all.includes(secret), `${secret} is in an exported span`);
});

test('QUEUED on the Redis outbox: the trace context rides in the BullMQ job\'s telemetry option, and the replica that delivers it links its CONSUMER span to the PRODUCER', async (t) => {
  const otlp = await receiver();
  const smtp = await startSmtp();
  const redis = await startRedis();
  const redisOutbox = { OUTBOX_STORE: 'redis', REDIS_URL: redis.url, REDIS_PREFIX: 'traced:', OTP_SECRET: 'a secret for the tracing test, 32 characters or more' };
  const env = relayEnv(smtp.port, { WORKERS: '1', ...redisOutbox, ...otlpEnv(otlp.url) });
  // A takes the message in; B, started once A is gone, delivers it.
  let svc: ServiceProcess = await startProcess(env, { timeoutMs: 20_000 });
  t.after(async () => {
    svc.proc.kill('SIGKILL');
    await smtp.close();
    await redis.stop();
    await new Promise((r) => otlp.server.close(r));
  });
  const mail = new (loadMailProto().mail.MailService)(`127.0.0.1:${svc.port}`, grpc.credentials.createInsecure());
  const traceId = 'eef92f3577b34da6a3ce929d0e0e4736';
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
  const later = Date.now() + 2500;
  await new Promise((resolve, reject) =>
    mail.SendMail({ to: 'a@example.com', subject: 's', body: 'b', delivery: 'DELIVERY_QUEUED', send_at: { seconds: String(Math.floor(later / 1000)), nanos: (later % 1000) * 1e6 } }, metadata, (e, r) => (e ? reject(e) : resolve(r))),
  );
  mail.close();
  const producer = await eventually(() => otlp.spans.find((s) => s.kind === KIND.PRODUCER && s.traceId === traceId), 10_000, 'the PRODUCER span');
  // In the job's telemetry option (BullMQ stores it as `tm` in the job's opts), as bullmq-otel writes it.
  const keys = new Redis(redis.url);
  // A job's hash is named by its id, the message id's SHA-256 in base64url.
  const jobs = (await keys.keys('traced:bull:outbox:*')).filter((k) => /^traced:bull:outbox:[\w-]{43}$/.test(k));
  const opts = await Promise.all(jobs.map((k) => keys.hget(k, 'opts')));
  await keys.quit();
  const tm = opts.map((o) => (JSON.parse(o ?? '{}') as { tm?: string }).tm).find((m) => m !== undefined);
  assert.deepEqual(JSON.parse(tm ?? '{}'), { traceparent: `00-${traceId}-${producer.spanId}-01` });
  svc.proc.kill('SIGTERM');
  assert.equal((await svc.exited).code, 0);
  svc = await startProcess(env, { timeoutMs: 20_000 });
  await smtp.waitForMessages(1, 15_000);
  const consumer = await eventually(() => otlp.spans.find((s) => s.kind === KIND.CONSUMER && s.links?.some((l) => l.traceId === traceId && l.spanId === producer.spanId)), 15_000, 'the CONSUMER span, linked');
  await eventually(() => otlp.spans.find((s) => s.name === 'mailroom queue' && s.parentSpanId === consumer.spanId), 10_000, 'the queue span under it');
});
