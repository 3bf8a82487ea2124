// A relay that restarts costs no call; one that stays away is said at once.
// Calls that arrive while no connection is up wait for the relay as long as
// it has been unreachable for less than SMTP_UNREACHABLE_AFTER_MS; past
// that, they fail at once with the relay and its error (see health.test.ts
// for a relay never reached at boot).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { waitFor } from 'xstate';
import { expectGrpcError, relayEnv, sendMail, startService, startSmtp, waitForPool, type RunningService } from './helpers.js';
import { RelaySwitch } from './relay-switch.js';

async function rig(t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string>): Promise<{ relay: RelaySwitch; svc: RunningService; delivered: () => number }> {
  const smtp = await startSmtp();
  const relay = await RelaySwitch.start(smtp.port);
  const svc = await startService(relayEnv(relay.port, { WORKERS: '2', SMTP_BACKOFF_BASE_MS: '20', SMTP_BACKOFF_MAX_MS: '60', ...env }));
  t.after(async () => {
    await svc.close();
    await relay.off();
    await smtp.close();
  });
  await waitForPool(svc);
  return { relay, svc, delivered: () => smtp.messages.length };
}

/** Resolves once the pool is down and every connection's last dial was refused (calls would fail at once, were it not for the threshold). */
function everyDialRefused(svc: RunningService, state: 'redialling' | 'unreachable', timeoutMs = 5000): Promise<unknown> {
  return waitFor(svc.service.supervisor, (s) => s.matches({ running: { delivery: { serving: { pool: { down: state } } } } }) && s.context.pool.unreachable, { timeout: timeoutMs });
}

test('a relay restart shorter than SMTP_UNREACHABLE_AFTER_MS: the call that came meanwhile waits and is delivered', async (t) => {
  const { relay, svc, delivered } = await rig(t, {});
  await relay.off();
  await everyDialRefused(svc, 'redialling');
  const started = Date.now();
  const sending = sendMail(svc, { to: 'a@example.com', subject: 'across a restart', body: 'b' }, { deadline: Date.now() + 30_000 });
  const back = new Promise<void>((resolve) => setTimeout(() => void relay.on().then(resolve), 600));
  const res = await sending;
  await back;
  assert.equal(res.status, 'SUCCESS');
  assert.ok(Date.now() - started >= 500, `it waited for the relay (${Date.now() - started} ms)`);
  assert.equal(delivered(), 1);
});

test('a relay away for longer than SMTP_UNREACHABLE_AFTER_MS: calls fail at once naming it; it comes back by itself', async (t) => {
  const { relay, svc, delivered } = await rig(t, { SMTP_UNREACHABLE_AFTER_MS: '300' });
  await relay.off();
  // Not yet: for the first 300 ms the pool only redials.
  await everyDialRefused(svc, 'redialling');
  await everyDialRefused(svc, 'unreachable');
  const t0 = Date.now();
  const err = await expectGrpcError(sendMail(svc, { to: 'a@example.com', subject: 'fast fail', body: 'b' }, { deadline: Date.now() + 30_000 }));
  assert.ok(Date.now() - t0 < 1000, `failed after ${Date.now() - t0} ms`);
  assert.equal(err.code, grpc.status.UNAVAILABLE);
  assert.match(err.details, new RegExp(`^relay 127\\.0\\.0\\.1:${relay.port}: connect ECONNREFUSED`));
  await relay.on();
  await waitForPool(svc);
  assert.equal((await sendMail(svc, { to: 'a@example.com', subject: 'back', body: 'b' })).status, 'SUCCESS');
  assert.equal(delivered(), 1);
});
