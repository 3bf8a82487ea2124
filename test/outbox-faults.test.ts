// The outbox against what ends processes and fills disks, with real
// processes, a real SQLite file and a real (small) filesystem: SIGKILL
// under load loses no message that was answered QUEUED, and the copies it
// can cause are counted; SIGTERM leaves queued messages for the next start;
// a full disk refuses new messages and loses none; a final message's text
// is gone from the files; a store that cannot be opened stops boot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { simpleParser } from 'mailparser';
import { eventually, expectGrpcError, faultEnv, once, relayEnv, spawnService, startService, startSmtp } from './helpers.js';
import { FaultPeer } from './fault-peer.js';
import { startProcess } from './process.js';
import { cancelMessage, getMessage, queue, until } from './outbox-client.js';

function client(port: number) {
  return { mail: new (loadMailProto().mail.MailService)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) };
}

function outboxFile(): string {
  return join(mkdtempSync(join(tmpdir(), 'mailroom-outbox-faults-')), 'outbox.db');
}

test('SIGKILL under load: every message answered QUEUED is delivered after a restart; the only copies are those in flight, at most WORKERS × SMTP_PIPELINE_DEPTH', async (t) => {
  const WORKERS = 2;
  const DEPTH = 4;
  // CHUNKING, so each connection has DEPTH messages in flight; the relay takes 20 ms a message.
  const peer = await FaultPeer.start({ chunking: true, script: (c) => (c.stage === 'dot' ? { delay: 20 } : undefined) });
  t.after(() => peer.close());
  const path = outboxFile();
  // A fixed depth: the bound below is exact only when the depth cannot grow with the round trip.
  const env = faultEnv(peer.port, { WORKERS: String(WORKERS), SMTP_PIPELINE_DEPTH: String(DEPTH), SMTP_PIPELINE_DEPTH_MAX: String(DEPTH), OUTBOX_PATH: path });
  const first = await startProcess(env);
  const c1 = client(first.port);
  const answered = (await Promise.all(Array.from({ length: 1000 }, (_, i) => queue(c1, { to: 'ann@example.com', subject: `kill ${i}`, body: 'b' }).then((r) => r.message_id, () => undefined)))).filter(
    (id): id is string => id !== undefined,
  );
  c1.mail.close();
  assert.equal(answered.length, 1000, 'every call was answered QUEUED');
  await peer.until(() => peer.messages.length >= 100, 10_000, 'deliveries under way');
  first.proc.kill('SIGKILL');
  await first.exited;
  const beforeRestart = peer.messages.length;
  assert.ok(beforeRestart < 1000, 'killed with messages still to send');

  const second = await startProcess(env);
  t.after(() => second.proc.kill('SIGKILL'));
  assert.ok(second.logs.some((l) => l.message === 'listening'));
  await peer.until(() => new Set(peer.messages.map((m) => m.messageId)).size >= 1000, 30_000, 'every answered message delivered');
  const delivered = new Set(peer.messages.map((m) => m.messageId));
  for (const id of answered) assert.ok(delivered.has(id), `${id} was delivered`);
  const copies = peer.messages.length - delivered.size;
  assert.ok(copies <= WORKERS * DEPTH, `${copies} copies beyond one (at most ${WORKERS * DEPTH}: the messages in flight at the kill)`);
  const released = second.logs.find((l) => String(l.message).startsWith('outbox: messages a stop left under way'));
  assert.ok(released !== undefined && Number(released.released) <= WORKERS * DEPTH * 2 + 256, 'the restart said how many it queued again');
  const c2 = client(second.port);
  assert.equal((await getMessage(c2, answered[0] as string)).state, 'MESSAGE_STATE_SENT');
  c2.mail.close();
  second.proc.kill('SIGTERM');
  assert.equal((await second.exited).code, 0);
  process.stdout.write(`# SIGKILL: ${beforeRestart} delivered before the kill, ${copies} copies after the restart\n`);
});

test('SIGTERM leaves queued messages in the outbox; the next start delivers them, each once', async (t) => {
  // The relay refuses connections at first: nothing is in flight when the signal comes.
  let refusing = true;
  const peer = await FaultPeer.start({ script: (c) => (refusing && c.stage === 'connect' ? { reply: '554 5.3.2 not now', close: true } : undefined) });
  t.after(() => peer.close());
  const path = outboxFile();
  const env = faultEnv(peer.port, { WORKERS: '2', OUTBOX_PATH: path, SHUTDOWN_TIMEOUT_SECONDS: '1' });
  const first = await startProcess(env);
  const c1 = client(first.port);
  const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => queue(c1, { to: 'ann@example.com', subject: `term ${i}`, body: 'b' }).then((r) => r.message_id)));
  c1.mail.close();
  first.proc.kill('SIGTERM');
  assert.equal((await first.exited).code, 0);
  assert.equal(peer.messages.length, 0);
  refusing = false;
  const second = await startProcess(env);
  t.after(() => second.proc.kill('SIGKILL'));
  await peer.until(() => peer.messages.length >= 50, 10_000, 'the queued messages after the restart');
  assert.deepEqual(new Set(peer.messages.map((m) => m.messageId)), new Set(ids));
  assert.equal(peer.messages.length, 50, 'each once');
});

test('a full disk (a small tmpfs): QUEUED SendMail is refused, nothing accepted is lost or damaged, and acceptance resumes when space returns', async (t) => {
  const mount = mkdtempSync(join(tmpdir(), 'mailroom-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mount], { stdio: 'ignore' });
  } catch (err) {
    t.skip(`cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]}): this test needs root`);
    return;
  }
  t.after(() => {
    try {
      execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  // The relay holds every message: what is accepted stays in the outbox.
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'dot' ? { delay: 60_000 } : undefined) });
  const svc = await startService(faultEnv(peer.port, { WORKERS: '1', OUTBOX_PATH: join(mount, 'outbox.db'), SMTP_DATA_TIMEOUT_MS: '120000', OUTBOX_STORE_BACKOFF_MAX_MS: '1000' }));
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  const filler = join(mount, 'filler');
  writeFileSync(filler, Buffer.alloc(2_500_000));
  const body = 'y'.repeat(100_000);
  const accepted: string[] = [];
  let refusal: grpc.ServiceError | undefined;
  for (let i = 0; i < 100 && refusal === undefined; i++) {
    await queue(svc, { to: 'ann@example.com', subject: `fill ${i}`, body }).then(
      (r) => accepted.push(r.message_id),
      (err: grpc.ServiceError) => {
        refusal = err;
      },
    );
  }
  assert.ok(refusal !== undefined, 'the disk filled up');
  assert.ok([grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAVAILABLE].includes(refusal.code), `${grpc.status[refusal.code]}: ${refusal.details}`);
  assert.ok(accepted.length > 0);
  for (const id of accepted) assert.equal((await getMessage(svc, id)).state.startsWith('MESSAGE_STATE_'), true);
  rmSync(filler);
  // The store is probed again within its backoff (OUTBOX_STORE_BACKOFF_MAX_MS, 1 s here) of space returning.
  const after = await eventually(() => queue(svc, { to: 'ann@example.com', subject: 'space again', body: 'b' }), 2500, 'acceptance resumed');
  assert.equal(after.state, 'MESSAGE_STATE_QUEUED');
  // Every message accepted before is still there, with its text.
  for (const id of accepted) assert.notEqual((await getMessage(svc, id)).state, 'MESSAGE_STATE_FAILED');
  assert.equal((await cancelMessage(svc, after.message_id)).state, 'MESSAGE_STATE_CANCELLED');
});

test("a final message's text is gone from the outbox's files, and no status holds a subject, body or address", async (t) => {
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'RCPT' && c.arg.includes('refused') ? { reply: '550 5.1.1 no such user' } : undefined) });
  const path = outboxFile();
  const svc = await startService(faultEnv(peer.port, { WORKERS: '1', OUTBOX_PATH: path }));
  t.after(async () => {
    await svc.close();
    await peer.close();
  });
  const markers = { subject: 'SUBJECT-MARK-4b1', body: 'BODY-MARK-93c', to: 'private-recipient@mark.example' };
  const sent = await queue(svc, { to: markers.to, subject: `${markers.subject} sent`, body: `${markers.body} sent` });
  const failed = await queue(svc, { to: 'refused-person@mark.example', subject: `${markers.subject} failed`, body: `${markers.body} failed` });
  const cancelled = await queue(svc, { to: markers.to, subject: `${markers.subject} cancelled`, body: `${markers.body} cancelled`, send_at: { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
  await cancelMessage(svc, cancelled.message_id);
  await until(svc, sent.message_id, 'MESSAGE_STATE_SENT');
  await until(svc, failed.message_id, 'MESSAGE_STATE_FAILED');
  // The store truncates its WAL soon after deleting text.
  await new Promise((r) => setTimeout(r, 1500));
  const files = [path, `${path}-wal`, `${path}-shm`].filter((f) => existsSync(f)).map((f) => readFileSync(f).toString('latin1'));
  for (const marker of [markers.subject, markers.body, markers.to, 'private-recipient', 'refused-person']) {
    assert.ok(!files.some((f) => f.includes(marker)), `${marker} is in the outbox's files`);
  }
});

test('a queued message keeps its attachments until it is sent, and then they are gone from the files too', async (t) => {
  const smtp = await startSmtp();
  const path = outboxFile();
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', OUTBOX_PATH: path }));
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  const file = Buffer.from('ATTACHMENT-MARK-7f3e '.repeat(2000));
  // What the file looks like in the stored text: base64, in lines of 76.
  const stored = file.toString('base64').slice(0, 76);
  const held = await queue(svc, { to: 'x@example.com', subject: 's', body: 'b', attachments: [{ filename: 'mark.txt', content: file }], send_at: { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
  const files = (): string[] => [path, `${path}-wal`, `${path}-shm`].filter((f) => existsSync(f)).map((f) => readFileSync(f).toString('latin1'));
  assert.ok(files().some((f) => f.includes(stored)), 'the attachment is stored with the message while it waits');
  await cancelMessage(svc, held.message_id);
  const sent = await queue(svc, { to: 'y@example.com', subject: 's', body: 'b', attachments: [{ filename: 'mark.txt', content: file }] });
  await until(svc, sent.message_id, 'MESSAGE_STATE_SENT');
  const delivered = await simpleParser(smtp.messages.at(-1)?.raw ?? '');
  assert.ok(delivered.attachments[0]?.content.equals(file), 'delivered out of the outbox whole');
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(!files().some((f) => f.includes(stored)), 'gone from the files once final');
});

test('an outbox that cannot be opened stops boot with exit 2 and its path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-outbox-bad-'));
  const damaged = join(dir, 'damaged.db');
  writeFileSync(damaged, `SQLite format 3\0${'garbage'.repeat(1000)}`);
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'x');
  mkdirSync(join(dir, 'mail'));
  for (const [path, reason] of [
    [damaged, /cannot open the outbox/],
    [join(blocker, 'outbox.db'), /cannot make its folder/],
  ] as const) {
    const child = spawnService({ OUTBOX_PATH: path, MAIL_CAPTURE_DIR: join(dir, 'mail'), PORT: '0' });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 2, stderr);
    assert.ok(stderr.includes(`OUTBOX_PATH=${JSON.stringify(path)}`), stderr);
    assert.match(stderr, reason);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  }
});

export { expectGrpcError };
