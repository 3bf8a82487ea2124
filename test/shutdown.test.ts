// Graceful shutdown: in-flight jobs finish within SHUTDOWN_TIMEOUT_SECONDS,
// the rest fail UNAVAILABLE, every call gets exactly one reply, and a
// SIGTERM to the real process ends it with exit code 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket, type AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { MAIN, eventually, freshOutbox, startSmtp, startService, relayEnv, sendMail, once, spawnService, type SmtpPeer } from './helpers.js';

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

test('a relay that never answers the final dot is cut off at the close deadline, and the call fails', async () => {
  // The message is read and never answered: only the close deadline ends the wait.
  let inData = false;
  const smtp = await startSmtp({
    extra: {
      onData: (stream) => {
        inData = true;
        stream.resume();
      },
    },
  });
  open.push(smtp);
  const svc = await startService(
    relayEnv(smtp.port, { WORKERS: '1', SHUTDOWN_TIMEOUT_SECONDS: '0', SMTP_COMMAND_TIMEOUT_MS: '300', SMTP_DATA_TIMEOUT_MS: '60000' }),
  );
  const call = sendMail(svc, { to: 'ann@example.com', subject: 'into the void', body: 'b' }).then(
    () => 'SUCCESS',
    (err: grpc.ServiceError) => grpc.status[err.code],
  );
  await eventually(() => inData, 10_000, 'the message in DATA');
  const started = Date.now();
  await svc.service.shutdown();
  svc.mail.close();
  svc.otp.close();
  assert.equal(await call, 'UNAVAILABLE');
  assert.ok(Date.now() - started < 3_000, `shutdown took ${Date.now() - started} ms`);
});

/** Runs main.js against a relay on `port`; resolves once `ready(stderr)` holds. */
async function startMain(port: number, env: Record<string, string>, ready: (stderr: string) => boolean) {
  const child = spawnService(relayEnv(port, { PORT: '0', HOST: '127.0.0.1', WORKERS: '2', LOG_LEVEL: 'info', ...env }));
  const output = { stderr: '' };
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      output.stderr += chunk.toString();
      if (ready(output.stderr)) resolve();
    });
    void exited.then(() => reject(new Error(`exited early:\n${output.stderr}`)));
    if (ready('')) resolve();
  });
  return { child, exited, output };
}

test('SIGTERM: the process drains, quits its SMTP connections and exits 0', async () => {
  const smtp = await startSmtp();
  open.push(smtp);
  const { child, exited, output } = await startMain(smtp.port, {}, (stderr) => stderr.includes('"message":"listening"'));
  assert.equal(smtp.connections.length, 2, 'the pool dialled before it took traffic');

  assert.doesNotMatch(output.stderr, /started without/, 'npm start gives the V8 flags: no warning');

  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null, output.stderr);
  assert.equal(code, 0, output.stderr);
  assert.match(output.stderr, /"message":"stopped"/);
});

test('started without the V8 flags npm start gives, the service says so', async () => {
  const smtp = await startSmtp();
  open.push(smtp);
  const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', DOTENV_PATH: '/dev/null', OUTBOX_PATH: freshOutbox(), ...relayEnv(smtp.port, { PORT: '0', HOST: '127.0.0.1' }) }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('"message":"listening"')) resolve();
    });
  });
  child.kill('SIGKILL');
  assert.match(stderr, /started without --no-allocation-site-pretenuring/);
});

test('SIGTERM while boot still waits for the relay: handled, exit 0 (nothing was taken yet)', async () => {
  // A relay that takes connections and never greets keeps boot waiting.
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  open.push({
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => silent.close(() => r()));
    },
  });
  const port = (silent.address() as AddressInfo).port;
  const dialled = once(silent, 'connection');
  const { child, exited, output } = await startMain(port, { SMTP_CONNECT_TIMEOUT_MS: '500', SMTP_GREETING_TIMEOUT_MS: '500' }, () => true);
  // The pool dials only after main.js installed its handlers; boot now waits up to 1 s.
  await dialled;
  assert.doesNotMatch(output.stderr, /listening/, 'still booting');
  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null, `killed by the signal instead of handling it:\n${output.stderr}`);
  assert.equal(code, 0, output.stderr);
  assert.match(output.stderr, /SIGTERM during boot, exiting/);
});
