// The committed charts (docs/*.svg) are what the machines are now: a
// machine changed without `npm run charts` fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { MACHINES, chartFile, drawChart } from '../src/inspect/machines.js';
import { chartOf } from '../src/inspect/chart.js';
import { smtpConnectionMachine } from '../src/actors/smtp-connection.js';
import { supervisorMachine } from '../src/actors/supervisor.js';

for (const machine of MACHINES) {
  test(`docs/${chartFile(machine)} is the chart of the ${machine.id} machine as it is`, async () => {
    const committed = readFileSync(new URL(`../../docs/${chartFile(machine)}`, import.meta.url), 'utf8');
    assert.ok(committed === (await drawChart(machine)), `docs/${chartFile(machine)} is stale: run npm run charts and commit the result`);
  });
}

test('a chart names every state, every transition with its event and guard, delays and eventless transitions', () => {
  const chart = chartOf(supervisorMachine);
  const ids: string[] = [];
  const walk = (s: typeof chart.root): void => {
    ids.push(s.id);
    s.children.forEach(walk);
  };
  walk(chart.root);
  const d = 'supervisor.running.delivery';
  for (const id of [`${d}.starting`, `${d}.serving.pool.never.unreachable`, `${d}.serving.pool.up`, `${d}.serving.pool.degraded`, `${d}.serving.pool.down.unreachable`, `${d}.serving.jobs.backlogged`, 'supervisor.running.outbox.failing', `${d}.draining`, 'supervisor.stopped']) {
    assert.ok(ids.includes(id), id);
  }
  const labels = chart.edges.map((e) => `${e.source} -${e.label}-> ${e.target}`);
  assert.ok(labels.includes(`${d}.starting -always [allUp]-> ${d}.serving.pool.up`), labels.join('\n'));
  assert.ok(labels.includes(`${d}.draining -after shutdownTimeout-> supervisor.closing`));
  assert.ok(labels.includes(`${d} -shutdown-> ${d}.draining`));
  assert.ok(labels.includes('supervisor.running.outbox.failing -after storeBackoff-> supervisor.running.outbox.recovering'));
  const connection = chartOf(smtpConnectionMachine);
  const edges = connection.edges.map((e) => `${e.source} -${e.label}-> ${e.target}`);
  assert.ok(edges.includes('smtpConnection.connecting -done: dial-> smtpConnection.authenticated'));
  assert.ok(edges.includes('smtpConnection.reconnecting -after backoff-> smtpConnection.connecting'));
  assert.ok(connection.root.children.find((s) => s.key === 'connecting')?.invokes.includes('dial'));
});
