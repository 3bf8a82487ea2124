// The operators' kit: docs/grafana-dashboard.json and docs/alerts.yml name
// only metrics the service exports (scraped from a running one), and are
// well-formed enough for Grafana and Prometheus to load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { relayEnv, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';

const read = (path: string): string => readFileSync(fileURLToPath(new URL(`../../${path}`, import.meta.url)), 'utf8');
let smtp: SmtpPeer;
let svc: RunningService;
let exported: Set<string>;

before(async () => {
  smtp = await startSmtp();
  svc = await startService(relayEnv(smtp.port, { WORKERS: '1', METRICS_PORT: '0' }));
  const text = await (await fetch(`http://127.0.0.1:${svc.service.metricsPort}/metrics`)).text();
  exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1] as string));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

/** The metric names an expression uses, histogram series named by their family. */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b((?:mailroom|grpc_server)_[a-z_]+)/g)].map((m) => (m[1] as string).replace(/_(bucket|sum|count)$/, ''));
}

test('every metric the Grafana dashboard queries exists; every panel has a query', () => {
  const dashboard = JSON.parse(read('docs/grafana-dashboard.json')) as { panels: { title: string; targets: { expr: string }[] }[] };
  assert.ok(dashboard.panels.length >= 10);
  const missing: string[] = [];
  for (const p of dashboard.panels) {
    assert.ok(p.targets.length > 0, p.title);
    for (const t of p.targets) for (const m of metricsIn(t.expr)) if (!exported.has(m)) missing.push(`${p.title}: ${m}`);
  }
  assert.deepEqual(missing, []);
  for (const needed of ['mailroom_mail_delivered_total', 'mailroom_mail_delivery_seconds', 'mailroom_smtp_connections', 'mailroom_outbox_oldest_queued_seconds', 'mailroom_outbox_store_up', 'mailroom_otp_sent_total', 'mailroom_otp_checks_total']) {
    assert.ok(dashboard.panels.some((p) => p.targets.some((t) => metricsIn(t.expr).includes(needed))), `the dashboard shows ${needed}`);
  }
});

test('every alert names existing metrics and has an expression, a severity and a summary', () => {
  const text = read('docs/alerts.yml');
  const alerts = text.split(/^ {6}- alert: /m).slice(1);
  assert.ok(alerts.length >= 4);
  const names: string[] = [];
  for (const a of alerts) {
    const name = a.split('\n')[0] as string;
    names.push(name);
    const expr = /^ {8}expr: (\|\n(?: {10}.*\n)+|.*)$/m.exec(a)?.[1];
    assert.ok(expr !== undefined, `${name}: expr`);
    assert.match(a, /^ {10}severity: (critical|warning)$/m, `${name}: severity`);
    assert.match(a, /^ {10}summary: /m, `${name}: summary`);
    for (const m of metricsIn(expr)) assert.ok(exported.has(m), `${name}: ${m} is not exported`);
  }
  for (const needed of ['MailroomRelayUnreachable', 'MailroomOutboxOldestMessage', 'MailroomOutboxStoreFailing', 'MailroomErrorRate']) assert.ok(names.includes(needed), needed);
  assert.doesNotMatch(text, /\t/, 'YAML takes no tabs');
});
