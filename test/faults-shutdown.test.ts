// Graceful shutdown: queued jobs are still sent within SHUTDOWN_TIMEOUT_SECONDS,
// the rest fail UNAVAILABLE, no call hangs; the real process exits 0 on
// SIGTERM after the drain, and a second signal forces it out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FaultPeer } from './fault-peer.js';
import { expectGrpcError, faultEnv, mail, sendMail, spawnService, startRig, type RunningService, eventually } from './helpers.js';
import { loadMailProto } from '../src/rpc/proto.js';
import { startProcess as startServiceProcess, type ServiceProcess } from './process.js';

test('shutdown drains: every queued job is sent (a 451 retried meanwhile), connections QUIT, then calls are refused', async (t) => {
  let first451 = true;
  const { peer, svc } = await startRig(
    t,
    {
      script: (c) => {
        if (c.stage !== 'dot') return undefined;
        if (first451) {
          first451 = false;
          return { reply: '451 4.3.0 try again' };
        }
        return { delay: 20 };
      },
    },
    { WORKERS: '2', SHUTDOWN_TIMEOUT_SECONDS: '5' },
  );
  const reqs = Array.from({ length: 20 }, (_, i) => mail(`drain-${i}`));
  const calls = reqs.map((r) => sendMail(svc, r));
  await peer.until(() => peer.count('DATA') >= 2, 2000, 'sending under way');
  const started = Date.now();
  await svc.service.shutdown();
  const results = await Promise.all(calls);
  assert.ok(results.every((r) => r.status === 'SUCCESS'), 'all queued jobs were sent');
  assert.ok(Date.now() - started < 5000, 'within the shutdown deadline');
  for (const r of reqs) assert.equal(peer.withSubject(r.subject).length, 1);
  assert.ok(peer.connections.every((c) => c.quit), 'every connection said QUIT');
  const refused = await expectGrpcError(sendMail(svc, mail('after-shutdown'), { deadline: Date.now() + 1000 }));
  assert.equal(refused.code, grpc.status.UNAVAILABLE);
  assert.deepEqual(peer.violations, []);
});

test('shutdown deadline: what cannot be sent in time fails UNAVAILABLE, no call hangs', async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' ? { delay: 150 } : undefined) }, { WORKERS: '1', SHUTDOWN_TIMEOUT_SECONDS: '1' });
  const calls = Array.from({ length: 20 }, (_, i) => sendMail(svc, mail(`deadline-${i}`)).then(
    (r) => ({ ok: true as const, id: r.message_id }),
    (e: grpc.ServiceError) => ({ ok: false as const, code: e.code, details: e.details }),
  ));
  await peer.until(() => peer.count('DATA') >= 1, 2000, 'sending under way');
  const started = Date.now();
  await svc.service.shutdown();
  const took = Date.now() - started;
  const outcomes = await Promise.all(calls);
  const sent = outcomes.filter((o) => o.ok);
  const failed = outcomes.filter((o) => !o.ok);
  assert.ok(sent.length >= 3 && sent.length <= 9, `${sent.length} sent within one second at ~150 ms each`);
  assert.ok(failed.length > 0);
  for (const f of failed) {
    assert.equal(f.code, grpc.status.UNAVAILABLE);
    assert.match(f.details, /shut/);
  }
  assert.ok(took < 1000 + 500 + 1200, `shutdown took ${took} ms: drain deadline plus QUIT, no hang`);
  // The peer has every confirmed message; at most the one in flight at the deadline came on top.
  const ids = new Set(peer.messages.map((m) => m.messageId));
  for (const s of sent) assert.ok(ids.has(s.id));
  assert.ok(peer.messages.length <= sent.length + 1);
});

/** Starts `node dist/src/main.js` against the peer. */
function startProcess(peer: FaultPeer, env: Record<string, string>): Promise<ServiceProcess> {
  return startServiceProcess(faultEnv(peer.port, env));
}

function client(port: number): RunningService {
  const proto = loadMailProto();
  const mailClient = new proto.mail.MailService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return { mail: mailClient } as unknown as RunningService;
}

test('the process drains on SIGTERM and exits 0', async (t) => {
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { delay: 60 } : undefined) });
  t.after(() => peer.close());
  const child = await startProcess(peer, { WORKERS: '2', SHUTDOWN_TIMEOUT_SECONDS: '5' });
  t.after(() => {
    child.proc.kill('SIGKILL');
  });
  const svc = client(child.port);
  const reqs = Array.from({ length: 6 }, (_, i) => mail(`sigterm-${i}`));
  const calls = reqs.map((r) => sendMail(svc, r));
  await peer.until(() => peer.count('DATA') >= 2, 3000, 'sending under way');
  child.proc.kill('SIGTERM');
  const results = await Promise.all(calls);
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
  const { code } = await child.exited;
  assert.equal(code, 0);
  for (const r of reqs) assert.equal(peer.withSubject(r.subject).length, 1);
  assert.ok(child.logs.some((l) => l.message === 'stopped'));
  svc.mail.close();
});

test('a second signal forces the process out without waiting for the drain', async (t) => {
  // The relay swallows the message and never answers: the drain cannot finish.
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { stall: true } : undefined) });
  t.after(() => peer.close());
  const child = await startProcess(peer, { WORKERS: '1', SHUTDOWN_TIMEOUT_SECONDS: '30', SMTP_DATA_TIMEOUT_MS: '60000' });
  t.after(() => {
    child.proc.kill('SIGKILL');
  });
  const svc = client(child.port);
  const call = sendMail(svc, mail('stuck')).catch((e: grpc.ServiceError) => e);
  await peer.until(() => peer.messages.length === 1, 3000, 'the message data');
  child.proc.kill('SIGTERM');
  const stillUp = await Promise.race([child.exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 300))]);
  assert.ok(stillUp, 'the first signal waits for the drain');
  const forcedAt = Date.now();
  child.proc.kill('SIGTERM');
  const { code } = await child.exited;
  assert.equal(code, 1);
  assert.ok(Date.now() - forcedAt < 2000, 'out at once');
  assert.ok(child.logs.some((l) => l.message === 'second signal: exiting without waiting for the drain'));
  const outcome = await call;
  assert.ok(outcome instanceof Error, 'the caller got an error, not a hang');
  svc.mail.close();
});

test('a signal while the pool is still dialling ends the process at once', async (t) => {
  // The relay never greets: boot waits up to the connect + greeting timeouts.
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'connect' ? { stall: true } : undefined) });
  t.after(() => peer.close());
  const proc = spawnService(faultEnv(peer.port, { PORT: '0', HOST: '127.0.0.1', SMTP_GREETING_TIMEOUT_MS: '30000' }), { stdio: 'ignore' });
  t.after(() => {
    proc.kill('SIGKILL');
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  await peer.until(() => peer.connections.length >= 1, 5000, 'the first dial');
  const signalledAt = Date.now();
  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(Date.now() - signalledAt < 2000);
});

test('a relay that never answers QUIT does not hold the shutdown a whole command timeout', async (t) => {
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'QUIT' ? { stall: true } : undefined) }, { WORKERS: '2', SMTP_COMMAND_TIMEOUT_MS: '30000' });
  assert.equal((await sendMail(svc, mail('before-quit'))).status, 'SUCCESS');
  const started = Date.now();
  await svc.service.shutdown();
  const took = Date.now() - started;
  assert.ok(took < 3500, `shutdown took ${took} ms with QUIT unanswered`);
  assert.equal(peer.count('QUIT'), 2);
});

test('SIGHUP never ends the process: calls in flight go on, it says what it re-read, SIGTERM still drains', async (t) => {
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { delay: 60 } : undefined) });
  t.after(() => peer.close());
  const child = await startProcess(peer, { WORKERS: '2' });
  t.after(() => {
    child.proc.kill('SIGKILL');
  });
  const svc = client(child.port);
  const calls = Array.from({ length: 20 }, (_, i) => sendMail(svc, mail(`sighup-${i}`)));
  await peer.until(() => peer.count('DATA') >= 2, 3000, 'sending under way');
  const hups = (): number => child.logs.filter((e) => typeof e.message === 'string' && e.message.startsWith('SIGHUP')).length;
  const logged = async (n: number): Promise<void> => {
    await eventually(() => hups() >= n, 4000, `${n} SIGHUPs handled`);
  };
  // One at a time: the kernel merges a signal sent while the same one is still pending.
  child.proc.kill('SIGHUP');
  await logged(1);
  child.proc.kill('SIGHUP');
  await logged(2);
  const results = await Promise.all(calls);
  assert.ok(results.every((r) => r.status === 'SUCCESS'), 'every caller answered, none cut off');
  assert.equal(peer.messages.length, 20);
  assert.equal(hups(), 2, 'each SIGHUP logged');
  assert.equal((await sendMail(svc, mail('after-sighup'))).status, 'SUCCESS');
  child.proc.kill('SIGTERM');
  assert.deepEqual(await child.exited, { code: 0, signal: null });
});
