// The outbox on Redis (OUTBOX_STORE=redis, BullMQ) shared by two replicas
// on one real redis-server: a message queued through one is delivered once
// by either and answered by both; a cancel or a watch on the other sees
// it; a replica killed while it holds messages has them taken over by the
// other once its lease (OUTBOX_LEASE_SECONDS) runs out, and every message
// is delivered, the copies counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { eventually, faultEnv, startService, type RunningService } from './helpers.js';
import { FaultPeer } from './fault-peer.js';
import { RelaySwitch } from './relay-switch.js';
import { startRedis, type RedisServer } from './redis-server.js';
import { startProcess } from './process.js';
import { at, cancelMessage, getMessage, queue, until, watch } from './outbox-client.js';

let redis: RedisServer;

before(async () => {
  redis = await startRedis();
});

after(async () => {
  await redis.stop();
});

const env = (port: number, prefix: string, extra: Record<string, string> = {}): Record<string, string> =>
  faultEnv(port, { WORKERS: '2', REDIS_URL: redis.url, REDIS_PREFIX: `${prefix}:`, OTP_SECRET: 'the same secret on every replica, 32+', OUTBOX_STORE: 'redis', ...extra });

async function ready(svc: RunningService): Promise<void> {
  await eventually(() => svc.service.redis?.ready === true, 4000, 'Redis ready');
}

test('two replicas, one outbox: queued through A, delivered once, told by B; B cancels and watches what A queued', async (t) => {
  const peer = await FaultPeer.start();
  const a = await startService(env(peer.port, 'pair'));
  const b = await startService(env(peer.port, 'pair'));
  t.after(async () => {
    await a.close();
    await b.close();
    await peer.close();
  });
  await Promise.all([ready(a), ready(b)]);
  const watcher = watch(b);
  await watcher.live;
  const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => queue(a, { to: 'ann@example.com', subject: `pair ${i}`, body: 'b' }).then((r) => r.message_id)));
  await peer.until(() => peer.messages.length >= 40, 15_000, 'every message');
  for (const id of ids) assert.equal((await until(b, id, 'MESSAGE_STATE_SENT')).attempts, 1);
  assert.equal(new Set(peer.messages.map((m) => m.messageId)).size, 40);
  assert.equal(peer.messages.length, 40, 'each once');
  const conns = new Set(peer.messages.map((m) => m.conn));
  assert.ok(conns.size >= 2, 'sent over more than one connection');
  await watcher.until((events) => events.filter((e) => e.status?.state === 'MESSAGE_STATE_SENT').length === 40);
  watcher.close();

  const later = await queue(a, { to: 'ann@example.com', subject: 'cancel from b', body: 'b', send_at: at(Date.now() + 3_600_000) });
  assert.equal((await getMessage(b, later.message_id)).state, 'MESSAGE_STATE_QUEUED');
  assert.equal((await cancelMessage(b, later.message_id)).state, 'MESSAGE_STATE_CANCELLED');
  assert.equal((await getMessage(a, later.message_id)).state, 'MESSAGE_STATE_CANCELLED');
  const again = await queue(b, { to: 'ann@example.com', subject: 'idempotent', body: 'b', idempotency_key: 'k-1' });
  assert.equal((await queue(a, { to: 'ann@example.com', subject: 'idempotent', body: 'b', idempotency_key: 'k-1' })).message_id, again.message_id, 'one key, one message, whichever replica');
});

test('a replica killed while it holds messages: the other takes them over after the lease, and every message is delivered', async (t) => {
  // The relay holds each final dot 300 ms: the first replica is mid-send when it dies.
  const peer = await FaultPeer.start({ chunking: true, script: (c) => (c.stage === 'dot' ? { delay: 300 } : undefined) });
  t.after(() => peer.close());
  const lease = { OUTBOX_LEASE_SECONDS: '1', SMTP_DATA_TIMEOUT_MS: '5000', SMTP_PIPELINE_DEPTH: '4', SMTP_PIPELINE_DEPTH_MAX: '4' };
  const first = await startProcess(env(peer.port, 'takeover', lease));
  const client = { mail: new (loadMailProto().mail.MailService)(`127.0.0.1:${first.port}`, grpc.credentials.createInsecure()) };
  const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => queue(client, { to: 'ann@example.com', subject: `takeover ${i}`, body: 'b' }).then((r) => r.message_id)));
  client.mail.close();
  await peer.until(() => peer.messages.length >= 2, 10_000, 'the first replica sending');
  first.proc.kill('SIGKILL');
  await first.exited;
  const second = await startService(env(peer.port, 'takeover', lease));
  t.after(() => second.close());
  await peer.until(() => new Set(peer.messages.map((m) => m.messageId)).size >= 30, 30_000, 'every message, after the takeover');
  for (const id of ids) assert.equal((await until(second, id, 'MESSAGE_STATE_SENT', 10_000)).state, 'MESSAGE_STATE_SENT');
  const copies = peer.messages.length - 30;
  assert.ok(copies <= 2 * 4, `${copies} copies: at most what the dead replica had in flight (WORKERS × SMTP_PIPELINE_DEPTH)`);
});

test('lanes on Redis: of messages falling due together, HIGH goes before NORMAL and NORMAL before BULK', async (t) => {
  const peer = await FaultPeer.start();
  const a = await startService(env(peer.port, 'lanes', { WORKERS: '1', SMTP_PIPELINE_DEPTH: '1', SMTP_PIPELINE_DEPTH_MAX: '1' }));
  t.after(async () => {
    await a.close();
    await peer.close();
  });
  await ready(a);
  const due = at(Date.now() + 1500);
  const kinds = ['PRIORITY_BULK', 'PRIORITY_NORMAL', 'PRIORITY_HIGH'] as const;
  for (const priority of kinds) for (let i = 0; i < 3; i++) await queue(a, { to: 'ann@example.com', subject: `${priority} ${i}`, body: 'b', send_at: due, priority });
  await peer.until(() => peer.messages.length === 9, 15_000, 'all nine');
  const order = peer.messages.map((m) => /Subject: PRIORITY_(\w+)/.exec(m.data)?.[1]);
  assert.deepEqual(order, ['HIGH', 'HIGH', 'HIGH', 'NORMAL', 'NORMAL', 'NORMAL', 'BULK', 'BULK', 'BULK']);
});

test('the relay away: a message due in the Redis outbox is DEFERRED, saying why, with no attempt spent; sent once the relay is back', async (t) => {
  const peer = await FaultPeer.start();
  const relay = await RelaySwitch.start(peer.port);
  const a = await startService(env(relay.port, 'away', { SMTP_BACKOFF_BASE_MS: '20', SMTP_BACKOFF_MAX_MS: '200', SMTP_UNREACHABLE_AFTER_MS: '100' }));
  t.after(async () => {
    await a.close();
    await relay.off();
    await peer.close();
  });
  await ready(a);
  await relay.off();
  const res = await queue(a, { to: 'ann@example.com', subject: 'due while the relay is away', body: 'b', priority: 'PRIORITY_HIGH' });
  const deferred = await until(a, res.message_id, 'MESSAGE_STATE_DEFERRED');
  assert.equal(deferred.error_code, 'EUNAVAILABLE');
  // The connections' last word: the relay hung up on them, or refused their next dial.
  assert.match(deferred.last_response, new RegExp(`^relay 127\\.0\\.0\\.1:${relay.port}: (.*ECONNREFUSED|the SMTP relay closed the connection)`));
  assert.equal(deferred.attempts, 0, 'an outage spends no attempt');
  await relay.on();
  assert.equal((await until(a, res.message_id, 'MESSAGE_STATE_SENT', 15_000)).attempts, 1);
  assert.equal(peer.messages.length, 1);
});

test('bounces on the Redis outbox: a report taken by B moves what A sent (queued and SYNC); the suppression list is one for both, each told at once', async (t) => {
  const peer = await FaultPeer.start();
  const bounces = { BOUNCE_DOMAIN: 'bounces.example.test', BOUNCE_HOST: '127.0.0.1', BOUNCE_PORT: '0' };
  const a = await startService(env(peer.port, 'bounce', bounces));
  const b = await startService(env(peer.port, 'bounce', bounces));
  const suppress = new (loadMailProto().mail.SuppressionService)(`127.0.0.1:${a.service.port}`, grpc.credentials.createInsecure());
  t.after(async () => {
    suppress.close();
    await a.close();
    await b.close();
    await peer.close();
  });
  await Promise.all([ready(a), ready(b)]);
  const queued = await queue(a, { to: 'ok@example.com', cc: ['gone@example.com'], subject: 'q', body: 'b' });
  await until(a, queued.message_id, 'MESSAGE_STATE_SENT');
  const returnPath = peer.messages.find((m) => m.messageId === queued.message_id)?.from ?? '';
  assert.match(returnPath, /^b\+[a-z2-7]{26}@bounces\.example\.test$/);
  const dsn = (to: string, rcpt: string): string =>
    [
      `To: <${to}>`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="x"',
      '',
      '--x',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.example.com',
      '',
      `Final-Recipient: rfc822; ${rcpt}`,
      'Action: failed',
      'Status: 5.1.1',
      '',
      '--x--',
      '',
    ].join('\r\n');
  const { default: nodemailer } = await import('nodemailer');
  const report = async (port: number, to: string, rcpt: string): Promise<void> => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
    await transport.sendMail({ envelope: { from: '', to: [to] }, raw: dsn(to, rcpt) });
    transport.close();
  };
  await report(b.service.bouncePort as number, returnPath, 'gone@example.com');
  const bounced = await getMessage(a, queued.message_id);
  assert.equal(bounced.state, 'MESSAGE_STATE_BOUNCED');
  assert.deepEqual(bounced.bounces.map((x) => [x.recipient_index, x.kind, x.status]), [[1, 'BOUNCE_KIND_HARD', '5.1.1']]);
  // Suppressed by B's report: refused on A too (its mirror heard of it on the channel).
  const refuse = (svc: RunningService, to: string): Promise<grpc.ServiceError | undefined> =>
    new Promise((resolve) => svc.mail.SendMail({ to, subject: 's', body: 'b' }, (err) => resolve(err ?? undefined)));
  const refused = await eventually(() => refuse(a, 'gone@example.com'), 2000, 'A refuses the address B suppressed');
  assert.equal(refused.code, grpc.status.FAILED_PRECONDITION);

  // A SYNC send through A, bounced through B's listener.
  const sync = await new Promise<string>((resolve, reject) => a.mail.SendMail({ to: 'later@example.com', subject: 's', body: 'b' }, (err, res) => (err ? reject(err) : resolve(res?.message_id ?? ''))));
  const syncPath = peer.messages.find((m) => m.messageId === sync)?.from ?? '';
  // Its record is written within RECORD_EVERY_MS of A's reply: B may not see it before then.
  await eventually(async () => (await getMessage(b, sync).catch(() => undefined))?.state === 'MESSAGE_STATE_SENT', 2000, 'B sees the SYNC message SENT');
  await report(b.service.bouncePort as number, syncPath, 'later@example.com');
  assert.equal((await getMessage(a, sync)).state, 'MESSAGE_STATE_BOUNCED');

  // Removed through A, and B mails it again.
  await new Promise((resolve, reject) => suppress.RemoveSuppression({ address: 'gone@example.com' }, (err, res) => (err ? reject(err) : resolve(res))));
  await eventually(async () => (await refuse(b, 'gone@example.com')) === undefined, 2000, 'B mails it again once removed');

  // Four reports for one message at once, two through each replica: each is kept (none written over another's).
  const four = await queue(a, { to: 'r0@example.com', cc: ['r1@example.com', 'r2@example.com', 'r3@example.com'], subject: 'four', body: 'b' });
  await until(a, four.message_id, 'MESSAGE_STATE_SENT');
  const fourPath = peer.messages.find((m) => m.messageId === four.message_id)?.from ?? '';
  await Promise.all([0, 1, 2, 3].map((i) => report((i % 2 === 0 ? a : b).service.bouncePort as number, fourPath, `r${i}@example.com`)));
  const all = await getMessage(b, four.message_id);
  assert.deepEqual(all.bounces.map((x) => x.recipient_index).sort(), [0, 1, 2, 3], 'every report kept');
});
