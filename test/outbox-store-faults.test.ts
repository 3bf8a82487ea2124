// The outbox against faults of its own store, with real files on a real
// (small) filesystem: a disk that fills while mail flows, a service that
// boots on a full disk, a WAL damaged after a crash. What must hold: the
// store's failure is a state that health, metrics and callers see; what
// does not need the store (SYNC mail, codes, health) goes on; when the disk
// has room again acceptance and delivery resume without a restart; nothing
// answered QUEUED is lost; damage stops boot (exit 2, the path, what is
// wrong) instead of dropping mail in silence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { eventually, expectGrpcError, faultEnv, metadataValue, sendCode, sendMail, spawnService, startService, once } from './helpers.js';
import { FaultPeer } from './fault-peer.js';
import { startProcess } from './process.js';
import { cancelMessage, getMessage, queue, until } from './outbox-client.js';
import { check, healthClient } from './ops-clients.js';
import { mountTmpfs } from './tmpfs.js';

function client(port: number) {
  return { mail: new (loadMailProto().mail.MailService)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) };
}

async function metric(port: number | undefined, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${String(port)}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

test('a disk that fills: new queued mail is RESOURCE_EXHAUSTED, the outbox says it is failing, SYNC mail and codes go on; with room again acceptance and delivery resume without a restart, and nothing acknowledged is lost', async (t) => {
  const disk = mountTmpfs(t, '2m');
  if (disk === undefined) return;
  // The relay takes 30 ms a message: deliveries, their deletions and the checkpoints after them go on while the disk fills.
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { delay: 30 } : undefined) });
  const svc = await startService(faultEnv(peer.port, { WORKERS: '2', OUTBOX_PATH: join(disk.dir, 'outbox.db'), OUTBOX_STORE_BACKOFF_MAX_MS: '200', METRICS_PORT: '0' }));
  const health = healthClient(`127.0.0.1:${svc.service.port}`);
  t.after(async () => {
    health.close();
    await svc.close();
    await peer.close();
  });
  assert.equal(await check(health, 'mailroom.outbox'), 'SERVING');
  const later = await queue(svc, { to: 'ann@example.com', subject: 'later', body: 'b', send_at: { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
  const giveBack = disk.fill(1_000_000);
  const body = 'z'.repeat(30_000);
  const acknowledged: string[] = [];
  let refusal: grpc.ServiceError | undefined;
  for (let i = 0; i < 400 && refusal === undefined; i++) {
    await queue(svc, { to: 'ann@example.com', subject: `fill ${i}`, body }).then(
      (r) => acknowledged.push(r.message_id),
      (err: grpc.ServiceError) => {
        refusal = err;
      },
    );
  }
  assert.ok(refusal !== undefined, 'the disk filled up');
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  assert.equal(metadataValue(refusal, 'mailroom-error'), 'EQUEUEFULL');
  assert.ok(Number(metadataValue(refusal, 'retry-after')) > 0, 'with retry-after');
  assert.ok(acknowledged.length > 0);

  // What the store's failure looks like from outside, while it lasts.
  await eventually(async () => (await check(health, 'mailroom.outbox')) === 'NOT_SERVING', 2000, 'mailroom.outbox NOT_SERVING');
  assert.equal(await check(health, ''), 'SERVING', 'the service as a whole serves');
  assert.equal(await metric(svc.service.metricsPort, 'mailroom_outbox_store_up'), 0);
  const started = Date.now();
  const sync = await sendMail(svc, { to: 'bob@example.com', subject: 'sync while full', body: 'b' }, { deadline: Date.now() + 5000 });
  assert.equal(sync.state, 'MESSAGE_STATE_SENT');
  assert.ok(Date.now() - started < 1000, `SYNC SendMail answered in ${Date.now() - started} ms`);
  assert.equal((await sendCode(svc, 'carol@example.com')).status, 'SUCCESS');
  const again = await expectGrpcError(queue(svc, { to: 'ann@example.com', subject: 'still full', body: 'b' }));
  assert.equal(again.code, grpc.status.RESOURCE_EXHAUSTED);
  // A read needs no room; a cancel is a write, and the store cannot write: UNAVAILABLE, with why.
  assert.ok((await getMessage(svc, acknowledged[acknowledged.length - 1] as string)).state.startsWith('MESSAGE_STATE_'));
  const cancel = await expectGrpcError(cancelMessage(svc, later.message_id));
  assert.equal(cancel.code, grpc.status.UNAVAILABLE);
  assert.equal(metadataValue(cancel, 'mailroom-error'), 'ESTORE');
  assert.match(cancel.details, /disk is full/);

  giveBack();
  const freed = Date.now();
  const after = await eventually(() => queue(svc, { to: 'ann@example.com', subject: 'room again', body: 'b' }), 5000, 'acceptance resumed');
  const resumedIn = Date.now() - freed;
  assert.ok(resumedIn <= 200 + 1000, `acceptance resumed ${resumedIn} ms after space returned (OUTBOX_STORE_BACKOFF_MAX_MS + 1 s)`);
  acknowledged.push(after.message_id);
  assert.equal(await check(health, 'mailroom.outbox'), 'SERVING');
  assert.equal((await cancelMessage(svc, later.message_id)).state, 'MESSAGE_STATE_CANCELLED');
  assert.equal(await metric(svc.service.metricsPort, 'mailroom_outbox_store_up'), 1);
  for (const id of acknowledged) await until(svc, id, 'MESSAGE_STATE_SENT', 30_000);
  const delivered = new Set(peer.messages.map((m) => m.messageId));
  for (const id of acknowledged) assert.ok(delivered.has(id), `${id} was delivered`);
  const copies = peer.messages.filter((m) => m.messageId !== undefined && acknowledged.includes(m.messageId)).length - acknowledged.length;
  assert.equal(copies, 0, 'nothing sent twice: outcomes that could not be written were kept, not lost');
  process.stdout.write(`# full disk: ${acknowledged.length} acknowledged, ${acknowledged.length} delivered, ${copies} copies; acceptance back ${resumedIn} ms after space returned\n`);
});

test('booting on a full disk: SYNC mail and codes are served, the outbox says it is failing, and the mail it held goes out once there is room; never exit 1', async (t) => {
  const disk = mountTmpfs(t, '2m');
  if (disk === undefined) return;
  let refusing = true;
  const peer = await FaultPeer.start({ script: (c) => (refusing && c.stage === 'connect' ? { reply: '554 5.3.2 not now', close: true } : undefined) });
  t.after(() => peer.close());
  const env = faultEnv(peer.port, { WORKERS: '2', OUTBOX_PATH: join(disk.dir, 'outbox.db'), OUTBOX_STORE_BACKOFF_MAX_MS: '200', SHUTDOWN_TIMEOUT_SECONDS: '1' });
  // First, a service that queues what it cannot send yet, and stops.
  const first = await startProcess(env);
  const c1 = client(first.port);
  const held = await Promise.all(Array.from({ length: 20 }, (_, i) => queue(c1, { to: 'ann@example.com', subject: `held ${i}`, body: 'b' }).then((r) => r.message_id)));
  c1.mail.close();
  first.proc.kill('SIGTERM');
  assert.equal((await first.exited).code, 0);
  // Then the disk fills, and the service starts again on it.
  const giveBack = disk.fill(0);
  refusing = false;
  const second = await startProcess(env);
  t.after(() => second.proc.kill('SIGKILL'));
  const health = healthClient(`127.0.0.1:${second.port}`);
  t.after(() => health.close());
  const c2 = client(second.port);
  t.after(() => c2.mail.close());
  await eventually(async () => (await check(health, 'mailroom.outbox')) === 'NOT_SERVING', 2000, 'the outbox failing');
  assert.equal(await check(health, ''), 'SERVING');
  const sync = await new Promise<{ state: string }>((resolve, reject) =>
    c2.mail.SendMail({ to: 'bob@example.com', subject: 'sync on a full disk', body: 'b' }, { deadline: Date.now() + 5000 }, (err, res) => (err !== null ? reject(err) : resolve(res as { state: string }))),
  );
  assert.equal(sync.state, 'MESSAGE_STATE_SENT');
  assert.ok(second.logs.some((l) => String(l.message).startsWith('outbox: the store cannot be opened now')), 'the log says why');
  giveBack();
  await peer.until(() => held.every((id) => peer.messages.some((m) => m.messageId === id)), 10_000, 'the held mail, once there is room');
  assert.equal((await getMessage(c2, held[0] as string)).state, 'MESSAGE_STATE_SENT');
  assert.equal(second.proc.exitCode, null, 'still running');
  assert.ok(!second.logs.some((l) => 'raw' in l && String(l.raw).includes('SQLITE_FULL')), 'no stack trace');
});

test('a damaged WAL stops boot with exit 2, the path and what is wrong; OUTBOX_ACCEPT_DAMAGED=1 starts anyway and says what it dropped; an intact one loses nothing', async (t) => {
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'connect' ? { reply: '554 5.3.2 not now', close: true } : undefined) });
  t.after(() => peer.close());
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-wal-'));
  const path = join(dir, 'outbox.db');
  const env = faultEnv(peer.port, { WORKERS: '1', OUTBOX_PATH: path });
  const first = await startProcess(env);
  const c1 = client(first.port);
  const ids = await Promise.all(Array.from({ length: 200 }, (_, i) => queue(c1, { to: 'ann@example.com', subject: `wal ${i}`, body: 'b' }).then((r) => r.message_id)));
  c1.mail.close();
  first.proc.kill('SIGKILL');
  await first.exited;
  const wal = readFileSync(`${path}-wal`);
  assert.ok(wal.length > 100_000, `the messages are in the WAL (${wal.length} bytes)`);
  copyFileSync(path, `${path}.bak`);

  const boot = async (extra: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> => {
    copyFileSync(`${path}.bak`, path);
    const child = spawnService({ ...env, PORT: '0', HOST: '127.0.0.1', ...extra });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit') as Promise<[number | null]>;
    const listening = new Promise<void>((resolve) => child.stderr?.on('data', () => stderr.includes('"listening"') && resolve()));
    const first = await Promise.race([exited.then(([code]) => ({ code })), listening.then(() => ({ code: -1 }))]);
    if (first.code === -1) {
      child.kill('SIGKILL');
      await exited;
    }
    return { code: first.code, stderr };
  };

  const garbled = Buffer.from(wal);
  for (let i = 0; i < 8192; i++) garbled[Math.floor(wal.length / 2) + i] = (garbled[Math.floor(wal.length / 2) + i] ?? 0) ^ 0x5a;
  writeFileSync(`${path}-wal`, garbled);
  const middle = await boot();
  assert.equal(middle.code, 2, middle.stderr);
  assert.ok(middle.stderr.includes(`OUTBOX_PATH=${JSON.stringify(path)}`), middle.stderr);
  assert.match(middle.stderr, /fails its checksum, and valid frames follow it/);
  assert.doesNotMatch(middle.stderr, /\n\s+at /, 'no stack trace');

  const header = Buffer.from(wal);
  header[20] = (header[20] ?? 0) ^ 0xff;
  writeFileSync(`${path}-wal`, header);
  const head = await boot();
  assert.equal(head.code, 2, head.stderr);
  assert.match(head.stderr, /the WAL header is damaged/);

  writeFileSync(`${path}-wal`, garbled);
  const accepted = await boot({ OUTBOX_ACCEPT_DAMAGED: '1', LOG_FORMAT: 'json' });
  assert.equal(accepted.code, -1, 'it started');
  assert.match(accepted.stderr, /starting on a damaged WAL/);
  assert.match(accepted.stderr, /frames \d+ to \d+ of the WAL/);

  // The intact WAL: every message is there after the crash.
  writeFileSync(`${path}-wal`, wal);
  copyFileSync(`${path}.bak`, path);
  const third = await startProcess(env);
  t.after(() => third.proc.kill('SIGKILL'));
  const c3 = client(third.port);
  t.after(() => c3.mail.close());
  for (const id of [ids[0], ids[199]] as string[]) assert.notEqual((await getMessage(c3, id)).state, 'MESSAGE_STATE_UNSPECIFIED');
  let found = 0;
  for (const id of ids) if ((await getMessage(c3, id).catch(() => undefined)) !== undefined) found++;
  assert.equal(found, 200, 'all 200 acknowledged messages survived the crash');
  assert.equal((await cancelMessage(c3, ids[5] as string)).state, 'MESSAGE_STATE_CANCELLED');
});
