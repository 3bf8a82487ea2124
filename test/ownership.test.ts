// Who owns a queued message, seen from outside: SENDING means a connection
// holds it (so what waits can still be cancelled), and the way from a
// QUEUED SendMail to SENT is short: few actor events, few store round trips,
// the supervisor entered twice. The count comes from the inspector's own
// record of every actor event and the outbox's commit metric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { eventually, faultEnv, sleep, startService, waitForPool } from './helpers.js';
import { FaultPeer } from './fault-peer.js';
import { cancelMessage, getMessage, queue, watch } from './outbox-client.js';
import type { InspectRecord } from '../src/inspect/protocol.js';

async function metric(port: number | undefined, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${String(port)}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return Number(line?.split(' ')[1] ?? 0);
}

test('SENDING means held: 500 queued behind a slow relay, the last 100 cancelled; every one is CANCELLED and none reaches the relay', async (t) => {
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { delay: 40 } : undefined) });
  const svc = await startService(faultEnv(peer.port, { WORKERS: '2', METRICS_PORT: '0' }));
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  await waitForPool(svc);
  const ids = await Promise.all(Array.from({ length: 500 }, (_, i) => queue(svc, { to: 'ann@example.com', subject: `held ${i}`, body: 'b' }).then((r) => r.message_id)));
  // At no moment are more messages SENDING than the connections hold.
  const sending = await metric(svc.service.metricsPort, 'mailroom_outbox_messages', '{state="sending"}');
  assert.ok(sending <= 2 * 32, `${sending} SENDING with two connections`);
  const last = ids.slice(400);
  const cancelled = await Promise.all(last.map((id) => cancelMessage(svc, id)));
  assert.deepEqual(new Set(cancelled.map((c) => c.state)), new Set(['MESSAGE_STATE_CANCELLED']), 'every one of the last 100 cancelled');
  await eventually(async () => (await getMessage(svc, ids[399] as string)).state === 'MESSAGE_STATE_SENT', 30_000, 'the rest delivered');
  await sleep(200);
  const subjects = new Set(peer.messages.map((m) => /^Subject: (.*)$/m.exec(m.data)?.[1]));
  for (let i = 400; i < 500; i++) assert.ok(!subjects.has(`held ${i}`), `held ${i} reached the relay`);
  assert.equal(subjects.size, 400);
});

test('from a QUEUED SendMail to SENT: at most 8 actor events and store round trips together, the supervisor entered twice', async (t) => {
  const peer = await FaultPeer.start();
  const svc = await startService(faultEnv(peer.port, { WORKERS: '1', INSPECT_PORT: '0', METRICS_PORT: '0' }));
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  await waitForPool(svc);
  const records = async (): Promise<InspectRecord[]> =>
    (await (await fetch(`http://127.0.0.1:${String(svc.service.inspectPort)}/events.jsonl`)).text())
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as InspectRecord)
      .filter((r) => typeof r.seq === 'number');
  const watcher = watch(svc);
  await watcher.live;
  const from = Math.max(0, ...(await records()).map((r) => r.seq));
  const commits = await metric(svc.service.metricsPort, 'mailroom_outbox_commit_seconds_count');
  const res = await queue(svc, { to: 'ann@example.com', subject: 'counted', body: 'b' });
  await watcher.until((events) => events.some((e) => e.status?.message_id === res.message_id && e.status.state === 'MESSAGE_STATE_SENT'));
  watcher.close();
  const roundTrips = (await metric(svc.service.metricsPort, 'mailroom_outbox_commit_seconds_count')) - commits;
  // Every actor event in between but the sweep, which ticks on its own whatever happens.
  const path = (await records()).filter((r) => r.seq > from && (r.kind === 'step' || r.kind === 'event') && r.type !== 'sweep');
  const told = path.map((r) => `${r.actor}: ${String(r.type)}`);
  const supervisor = path.filter((r) => r.actor === 'supervisor');
  assert.ok(supervisor.length <= 2, `the supervisor was entered ${supervisor.length} times: ${told.join(', ')}`);
  assert.ok(path.length + roundTrips <= 8, `${path.length} actor events and ${roundTrips} store round trips: ${told.join(', ')}`);
  process.stdout.write(`# QUEUED to SENT: ${path.length} actor events + ${roundTrips} store round trips (${told.join(', ')})\n`);
});
