// The pipeline's depth at a distance. Pace on its own (pure arithmetic on
// reply times), then end to end: a relay offering CHUNKING behind a real
// TCP proxy that adds 60 ms of round trip; with the defaults a connection
// keeps more than SMTP_PIPELINE_DEPTH whole messages in flight, and never
// more than SMTP_PIPELINE_DEPTH_MAX.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pace } from '../src/smtp/pace.js';
import { FaultPeer } from './fault-peer.js';
import { faultEnv, sendMail, startService } from './helpers.js';

/** Replies that came every `gapMs`, each having waited `waitMs`. */
function paced(n: number, gapMs: number, waitMs: number): Pace {
  const pace = new Pace();
  for (let i = 0; i < n; i++) pace.observe(waitMs, i * gapMs);
  return pace;
}

test('Pace: the configured depth until there is enough to go on, and at no distance', () => {
  assert.equal(paced(5, 10, 100).depth(4, 32), 4, 'five replies say nothing yet');
  // 1,000 a second, each answered 1 ms after it was written: one in flight covers it.
  assert.equal(paced(100, 1, 1).depth(4, 32), 4);
});

test('Pace: a round trip holds rate × shortest wait, half as much again, and one more; within the bounds', () => {
  // 84 a second (one every 12 ms), the shortest wait 112 ms: 9.3 in a round trip.
  assert.equal(paced(64, 12, 112).depth(4, 32), Math.ceil(1.5 * (1 / 12) * 112) + 1);
  assert.equal(paced(64, 12, 62).depth(4, 32), Math.ceil(1.5 * (1 / 12) * 62) + 1);
  assert.equal(paced(64, 1, 500).depth(4, 32), 32, 'never above the most');
  // The shortest wait is kept: waits that grow with a queue at the relay do not raise it.
  const pace = paced(64, 12, 112);
  for (let i = 64; i < 200; i++) pace.observe(400, i * 12);
  assert.equal(pace.depth(4, 32), Math.ceil(1.5 * (1 / 12) * 112) + 1);
});

async function proxy(target: number, rttMs: number): Promise<{ port: number; stop(): void }> {
  const child = fork(fileURLToPath(new URL('../bench/delay-proxy.js', import.meta.url)), [JSON.stringify({ target, rttMs })], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (m: { type: string; port: number }) => m.type === 'listening' && resolve(m.port));
    child.once('exit', (code) => reject(new Error(`delay proxy exited ${code}`)));
  });
  return { port, stop: () => child.kill() };
}

/** The most BDAT commands that reached the peer within any `windowMs`: how many messages one write group held. */
function mostInWindow(peer: FaultPeer, windowMs: number): number {
  const at = peer.commands.filter((c) => c.verb === 'BDAT').map((c) => c.arrivedAt);
  let most = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while ((at[i] as number) - (at[j] as number) > windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

for (const [what, env, check] of [
  ['the defaults: the depth grows past SMTP_PIPELINE_DEPTH to cover 60 ms', {}, (most: number) => assert.ok(most >= 8, `at most ${most} messages arrived together`)],
  ['SMTP_PIPELINE_DEPTH_MAX=4 holds it at 4', { SMTP_PIPELINE_DEPTH_MAX: '4' }, (most: number) => assert.ok(most <= 4, `${most} messages arrived together`)],
] as const) {
  test(`a relay 60 ms away with CHUNKING: ${what}`, async (t) => {
    const peer = await FaultPeer.start({ chunking: true });
    const far = await proxy(peer.port, 60);
    const svc = await startService(faultEnv(far.port, { WORKERS: '1', SMTP_MAX_MESSAGES_PER_CONNECTION: '10000', ...env }));
    t.after(async () => {
      await svc.close();
      far.stop();
      await peer.close();
    });
    const sends = Array.from({ length: 300 }, (_, i) => sendMail(svc, { to: `d${i}@example.com`, subject: 's', body: 'b' }, { deadline: Date.now() + 60_000 }));
    const results = await Promise.all(sends);
    assert.equal(results.filter((r) => r.status === 'SUCCESS').length, 300);
    assert.deepEqual(peer.violations, []);
    const most = mostInWindow(peer, 30);
    t.diagnostic(`at most ${most} messages reached the relay within 30 ms`);
    check(most);
  });
}
