// /metrics as Prometheus scrapes it: the real text, parsed, against the
// calls made. Default process metrics, the gRPC server metrics of
// go-grpc-prometheus, mailroom's own; no label carries what a caller chose.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { codeFromMail, expectGrpcError, refusingRecipients, relayEnv, sendCode, sendMail, startService, startSmtp, validateCode, type RunningService, type SmtpPeer } from './helpers.js';
import { at, queue, until } from './outbox-client.js';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp({ extra: refusingRecipients('nobody@') });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2', METRICS_PORT: '0' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

async function scrape(path = '/metrics'): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`http://127.0.0.1:${svc.service.metricsPort}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

/** The text exposition format's samples: `name{a="x",b="y"} value`. */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

test('the metrics follow the calls made, with closed label sets only', async () => {
  const subject = 'a subject only the caller knows';
  for (let i = 0; i < 3; i++) await sendMail(svc, { to: `reader${i}@example.com`, subject, body: 'b' });
  await expectGrpcError(sendMail(svc, { to: 'not an address', subject, body: 'b' }));
  const refused = await expectGrpcError(sendMail(svc, { to: 'nobody@example.com', subject, body: 'b' }));
  assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
  await sendCode(svc, 'code@example.com');
  const code = await codeFromMail(smtp, 'code@example.com');
  await validateCode(svc, 'code@example.com', code === '000000' ? '111111' : '000000');

  const { status, type, text } = await scrape();
  assert.equal(status, 200);
  assert.match(type ?? '', /^text\/plain; version=0\.0\.4/);
  const samples = parse(text);
  const sendMailLabels = { grpc_type: 'unary', grpc_service: 'mail.MailService', grpc_method: 'SendMail' };
  assert.equal(value(samples, 'grpc_server_started_total', sendMailLabels), 5);
  assert.equal(value(samples, 'grpc_server_handled_total', { ...sendMailLabels, grpc_code: 'OK' }), 3);
  assert.equal(value(samples, 'grpc_server_handled_total', { ...sendMailLabels, grpc_code: 'InvalidArgument' }), 2);
  assert.equal(value(samples, 'grpc_server_handling_seconds_count', sendMailLabels), 5);
  assert.equal(value(samples, 'grpc_server_handled_total', { grpc_service: 'mail.OtpService', grpc_method: 'ValidateCode', grpc_code: 'OK' }), 1);

  assert.equal(value(samples, 'mailroom_mail_delivered_total'), 4, 'three mails and a code mail');
  assert.equal(value(samples, 'mailroom_mail_failed_total', { code: 'ERECIPIENT' }), 1);
  assert.equal(value(samples, 'mailroom_delivery_attempts_total', { outcome: 'delivered' }), 4);
  assert.equal(value(samples, 'mailroom_delivery_attempts_total', { outcome: 'permanent' }), 1);
  assert.equal(value(samples, 'mailroom_mail_delivery_seconds_count'), 4);
  assert.equal(value(samples, 'mailroom_queue_depth'), 0);
  assert.equal(value(samples, 'mailroom_smtp_reconnects_total'), 0);
  const states = samples.filter((s) => s.name === 'mailroom_smtp_connections');
  assert.equal(states.reduce((n, s) => n + s.value, 0), 2, 'every connection is in one state');
  for (const state of ['connecting', 'idle', 'sending', 'reconnecting', 'closed']) assert.ok(states.some((s) => s.labels.state === state), `state ${state} is reported`);
  assert.equal(value(samples, 'mailroom_otp_sent_total', { outcome: 'sent' }), 1);
  assert.equal(value(samples, 'mailroom_otp_checks_total', { result: 'invalid' }), 1);
  assert.equal(value(samples, 'mailroom_otp_live_codes'), 1);

  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
    assert.ok(value(samples, name) !== undefined, `default metric ${name}`);
  }
  assert.match(text, /^# HELP nodejs_gc_duration_seconds /m);
  for (const s of samples) {
    for (const v of Object.values(s.labels)) {
      assert.ok(!v.includes('@') && !v.includes(subject), `${s.name} carries a caller's value: ${v}`);
    }
  }
});

test('the outbox: messages by state, the oldest queued, commit times; its deliveries count as mail delivered', async () => {
  const before = value(parse((await scrape()).text), 'mailroom_mail_delivered_total') ?? 0;
  const res = await queue(svc, { to: 'queued@example.com', subject: 'queued', body: 'b' });
  await until(svc, res.message_id, 'MESSAGE_STATE_SENT');
  await queue(svc, { to: 'later@example.com', subject: 'later', body: 'b', send_at: at(Date.now() + 3_600_000) });
  const samples = parse((await scrape()).text);
  assert.equal(value(samples, 'mailroom_outbox_messages', { state: 'sent' }), 1);
  assert.equal(value(samples, 'mailroom_outbox_messages', { state: 'queued' }), 1);
  for (const state of ['sending', 'deferred', 'failed', 'cancelled']) assert.equal(value(samples, 'mailroom_outbox_messages', { state }), 0, state);
  const oldest = value(samples, 'mailroom_outbox_oldest_queued_seconds') ?? -1;
  assert.ok(oldest >= 0 && oldest < 60, `oldest queued: ${oldest} s`);
  assert.ok((value(samples, 'mailroom_outbox_commit_seconds_count') ?? 0) >= 3, 'accept, claim and outcome each committed');
  assert.equal(value(samples, 'mailroom_mail_delivered_total'), before + 1);
});

test('only GET /metrics is served', async () => {
  assert.equal((await scrape('/')).status, 404);
  assert.equal((await scrape('/metrics?x=1')).status, 200);
});

test('METRICS_PORT=0: the OS picks the port; METRICS_HOST is loopback by default', () => {
  assert.equal(svc.service.config.metrics?.host, '127.0.0.1');
  assert.ok((svc.service.metricsPort ?? 0) > 0, 'METRICS_PORT=0: the OS picked a port');
});
