// Graceful shutdown: in-flight jobs finish within SHUTDOWN_TIMEOUT_SECONDS,
// the rest fail UNAVAILABLE, every call gets exactly one reply, and a
// SIGTERM to the real process ends it with exit code 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { startSmtp, startService, relayEnv, sendMail, once, type SmtpPeer } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const peer of open.reverse()) await peer.close();
});

test('shutdown with jobs queued: every call gets one reply, successes = messages the relay accepted', async () => {
  // ~50 ms a message on one connection: 30 messages need ~1.5 s, the drain gets 1 s.
  const smtp: SmtpPeer = await startSmtp({ dataDelayMs: 50 });
  open.push(smtp);
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', SHUTDOWN_TIMEOUT_SECONDS: '1' }));

  const outcomes = Array.from({ length: 30 }, (_, i) =>
    sendMail(svc, { to: `user${i}@example.com`, subject: `n${i}`, body: 'b' }, { deadline: Date.now() + 10_000 }).then(
      () => 'SUCCESS',
      (err: grpc.ServiceError) => grpc.status[err.code],
    ),
  );
  await smtp.waitForMessages(1);
  const started = Date.now();
  await svc.service.shutdown();
  const results = await Promise.all(outcomes);
  svc.mail.close();
  svc.otp.close();

  assert.ok(Date.now() - started < 4_000, 'shutdown kept to its deadline');
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r, (counts.get(r) ?? 0) + 1);
  assert.deepEqual([...counts.keys()].filter((k) => k !== 'SUCCESS' && k !== 'UNAVAILABLE'), [], `outcomes: ${JSON.stringify([...counts])}`);
  assert.ok((counts.get('UNAVAILABLE') ?? 0) > 0, 'the drain deadline cut some jobs off');
  assert.ok((counts.get('SUCCESS') ?? 0) > 1, 'jobs kept flowing while draining');
  // Give a 250 that raced the deadline time to land before counting.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(counts.get('SUCCESS'), smtp.messages.length, 'a caller told UNAVAILABLE never had its message accepted');
});

test('SIGTERM: the process drains, quits its SMTP connections and exits 0', async () => {
  const smtp = await startSmtp();
  open.push(smtp);
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '',
      DOTENV_PATH: '/nonexistent/.env',
      ...relayEnv(smtp.port, { PORT: '0', HOST: '127.0.0.1', WORKERS: '2', LOG_LEVEL: 'info' }),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const listening = new Promise<void>((resolve) => {
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('"message":"listening"')) resolve();
    });
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await Promise.race([listening, exited.then(() => assert.fail(`exited before listening:\n${stderr}`))]);
  assert.equal(smtp.connections.length, 2, 'the pool was up before it took traffic');

  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  assert.match(stderr, /"message":"stopped"/);
});
