// A fault is a state, never a loop: with the relay down and a message due,
// and again with the outbox's store unable to write, the supervisor steps a
// few times a second at most, the process uses a sliver of a core, and the
// log says each thing once (then once a second, then a summary).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { closedPort, recordingLogger, relayEnv, sleep, startService, startSmtp, type RunningService } from './helpers.js';
import { at, queue, until, watch } from './outbox-client.js';
import { mountTmpfs } from './tmpfs.js';

const WINDOW_MS = 10_000;

/** Supervisor steps and CPU over `ms` of a service left alone. */
async function idleCost(svc: RunningService, ms: number): Promise<{ stepsPerSecond: number; cpuShare: number }> {
  let steps = 0;
  const subscription = svc.service.supervisor.subscribe(() => steps++);
  const cpu = process.cpuUsage();
  const started = performance.now();
  await sleep(ms);
  const used = process.cpuUsage(cpu);
  const elapsed = performance.now() - started;
  subscription.unsubscribe();
  return { stepsPerSecond: (steps * 1000) / elapsed, cpuShare: (used.user + used.system) / 1000 / elapsed };
}

test('the relay down with a message due: fewer than 20 supervisor steps a second and under 3% of a core; the message is DEFERRED once, saying why', async (t) => {
  const port = await closedPort();
  const logs = recordingLogger('info');
  // Default backoff and pool: what an operator runs.
  const svc = await startService(relayEnv(port, { WORKERS: '5' }), { log: logs.logger });
  t.after(() => svc.close());
  const watcher = watch(svc);
  await watcher.live;
  const res = await queue(svc, { to: 'ann@example.com', subject: 'due while the relay is down', body: 'b' });
  const deferred = await until(svc, res.message_id, 'MESSAGE_STATE_DEFERRED');
  assert.equal(deferred.error_code, 'EUNAVAILABLE');
  assert.match(deferred.last_response, new RegExp(`relay 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  assert.equal(deferred.attempts, 0, 'an outage spends no attempt');
  assert.ok(deferred.next_attempt_at !== null, 'it says when the next dial is');
  const cost = await idleCost(svc, WINDOW_MS);
  assert.ok(cost.stepsPerSecond < 20, `${cost.stepsPerSecond.toFixed(1)} supervisor steps a second`);
  assert.ok(cost.cpuShare < 0.03, `${(cost.cpuShare * 100).toFixed(2)}% of a core`);
  const changes = watcher.events.filter((e) => e.status?.message_id === res.message_id).map((e) => e.status?.state);
  assert.deepEqual(changes, ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_DEFERRED'], 'the watcher heard of the outage once, not once per dial');
  watcher.close();
  const repeated = new Map<string, number>();
  for (const e of logs.entries) repeated.set(e.message, (repeated.get(e.message) ?? 0) + 1);
  for (const [message, n] of repeated) assert.ok(n <= 3 + WINDOW_MS / 1000 + 2, `"${message}" logged ${n} times`);
  process.stdout.write(`# relay down: ${cost.stepsPerSecond.toFixed(1)} steps/s, ${(cost.cpuShare * 100).toFixed(2)}% of a core\n`);
});

test('the store unable to write with a message due: fewer than 20 supervisor steps a second and under 3% of a core, a quiet log; it is sent once the store writes again', async (t) => {
  const disk = mountTmpfs(t, '2m');
  if (disk === undefined) return;
  const smtp = await startSmtp();
  const logs = recordingLogger('info');
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '2', OUTBOX_PATH: join(disk.dir, 'outbox.db') }), { log: logs.logger });
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  // Due in a second: by then the disk is full, and claiming it is a write that fails.
  const res = await queue(svc, { to: 'ann@example.com', subject: 'due on a full disk', body: 'b', send_at: at(Date.now() + 1000) });
  const giveBack = disk.fill(0);
  await sleep(1500);
  const cost = await idleCost(svc, WINDOW_MS);
  assert.ok(cost.stepsPerSecond < 20, `${cost.stepsPerSecond.toFixed(1)} supervisor steps a second`);
  assert.ok(cost.cpuShare < 0.03, `${(cost.cpuShare * 100).toFixed(2)}% of a core`);
  const failing = logs.entries.filter((e) => e.message === 'outbox: the store is failing; queued mail waits, SYNC mail and codes go on');
  assert.ok(failing.length >= 1, 'the failure is logged');
  assert.ok(failing.length <= 3 + (WINDOW_MS + 1500) / 1000, `and not in a storm (${failing.length} lines)`);
  assert.equal(smtp.messages.length, 0);
  giveBack();
  await until(svc, res.message_id, 'MESSAGE_STATE_SENT', 10_000);
  assert.equal(smtp.messages.length, 1);
  process.stdout.write(`# store down: ${cost.stepsPerSecond.toFixed(1)} steps/s, ${(cost.cpuShare * 100).toFixed(2)}% of a core, ${failing.length} failure lines\n`);
});
