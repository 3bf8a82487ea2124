// Lanes and shares, through the public surface against a real SMTP peer:
// the order in which one connection takes work (a code, SYNC, HIGH, NORMAL,
// BULK), callers taking turns within a lane, bulk's least share, every
// limit's per-caller share with two tokens, and a code mail that outlives
// its code never sent.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { SendEmailResponse__Output } from '../src/generated/mail/SendEmailResponse.js';
import type { SendMailBatchResponse__Output } from '../src/generated/mail/SendMailBatchResponse.js';
import type { PeerMessage } from './fault-peer.js';
import { eventually, expectGrpcError, metadataValue, startRig, type Rig, type RunningService } from './helpers.js';
import { at } from './outbox-client.js';
import { startRedis, type RedisServer } from './redis-server.js';

const TOKENS = { app: `app-${'a'.repeat(40)}`, bulk: `bulk-${'b'.repeat(40)}` } as const;
type Caller = keyof typeof TOKENS;

function tokensFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-lanes-')), 'tokens');
  writeFileSync(file, `app ${TOKENS.app}\nbulk ${TOKENS.bulk}\n`);
  return file;
}

function as(caller: Caller): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${TOKENS[caller]}`);
  return m;
}

function settle<T>(resolve: (v: T) => void, reject: (e: grpc.ServiceError) => void): grpc.requestCallback<T> {
  return (err, res) => (err ? reject(err) : resolve(res as T));
}

const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 20_000 });

function send(svc: RunningService, caller: Caller, req: SendEmailRequest): Promise<SendEmailResponse__Output> {
  return new Promise((resolve, reject) => svc.mail.SendMail(req, as(caller), deadline(), settle(resolve, reject)));
}

function batch(svc: RunningService, caller: Caller, messages: SendEmailRequest[]): Promise<SendMailBatchResponse__Output> {
  return new Promise((resolve, reject) => svc.mail.SendMailBatch({ messages }, as(caller), deadline(), settle(resolve, reject)));
}

function sendCode(svc: RunningService, caller: Caller, email: string): Promise<unknown> {
  return new Promise((resolve, reject) => svc.otp.SendCode({ email }, as(caller), deadline(), settle(resolve, reject)));
}

const queued = (subject: string, priority: SendEmailRequest['priority'], extra: Partial<SendEmailRequest> = {}): SendEmailRequest => ({
  to: 'rcpt@example.com',
  subject,
  body: `body of ${subject}`,
  delivery: 'DELIVERY_QUEUED',
  priority,
  ...extra,
});

const subjectOf = (m: PeerMessage): string => /\r\nSubject: ([^\r]*)\r\n/.exec(`\r\n${m.data}`)?.[1] ?? (m.to.join(','));

/** The outbox in SQLite (the default) and in a real redis-server (BullMQ), each with the same promises. */
const STORES = ['sqlite', 'redis'] as const;
let redis: RedisServer | undefined;
let prefixes = 0;
after(async () => redis?.stop());

/** startRig, the outbox in `store`: with Redis, once the service has reached it. */
async function rigIn(t: { after: (fn: () => Promise<void>) => void }, store: (typeof STORES)[number], env: Record<string, string>): Promise<Rig> {
  if (store === 'sqlite') return startRig(t, {}, env);
  redis ??= await startRedis();
  const rig = await startRig(t, {}, { ...env, OUTBOX_STORE: 'redis', REDIS_URL: redis.url, REDIS_PREFIX: `lanes-${++prefixes}:`, OTP_SECRET: 'a secret for the lanes tests, 32 characters or more' });
  await eventually(() => rig.svc.service.redis?.ready === true, 5000, 'Redis ready');
  return rig;
}

/** One connection that carries one message at a time at first: the order it takes work in is the order the relay sees. */
const ONE_AT_A_TIME = { WORKERS: '1', SMTP_PIPELINE_DEPTH: '1', SMTP_PIPELINE_DEPTH_MAX: '1', SMTP_DATA_TIMEOUT_MS: '10000' };

for (const store of STORES) {
  test(`lanes (${store}): behind a message under way, a code goes first, then SYNC, then HIGH, then NORMAL with callers taking turns, then BULK`, async (t) => {
  const { peer, svc } = await rigIn(t, store, { ...ONE_AT_A_TIME, AUTH_TOKENS_FILE: tokensFile(), LANE_BULK_MIN_SHARE: '0' });
  // The first message holds the one connection while everything else arrives.
  peer.script = (c) => (c.stage === 'dot' && c.total === 0 ? { delay: 3000 } : undefined);
  const plug = send(svc, 'app', { to: 'rcpt@example.com', subject: 'plug', body: 'x' });
  await peer.until(() => peer.count('DATA') + peer.count('BDAT') > 0, 5000, 'the plug under way');
  // One after the other, the caller with four NORMAL first: in arrival order its four would go before the other's two.
  for (const [caller, subjects, priority] of [
    ['bulk', [1, 2, 3, 4].map((i) => `bulk-${i}`), 'PRIORITY_BULK'],
    ['bulk', [1, 2, 3, 4].map((i) => `normal-bulk-${i}`), 'PRIORITY_NORMAL'],
    ['app', [1, 2].map((i) => `normal-app-${i}`), 'PRIORITY_NORMAL'],
    ['app', [1, 2].map((i) => `high-${i}`), 'PRIORITY_HIGH'],
  ] as const) {
    const answer = await batch(svc, caller, subjects.map((subject) => queued(subject, priority)));
    assert.ok(answer.results.every((r) => r.code === 0));
  }
  const sync = send(svc, 'app', { to: 'rcpt@example.com', subject: 'sync', body: 'x' });
  const code = sendCode(svc, 'app', 'code@example.com');
  await Promise.all([plug, sync, code]);
  await peer.until(() => peer.messages.length === 15, 10_000, 'all 15 delivered');
  const order = peer.messages.map((m) => (m.to.includes('code@example.com') ? 'code' : subjectOf(m)));
  assert.deepEqual(order.slice(0, 3), ['plug', 'code', 'sync'], `order: ${order.join(' ')}`);
  const kinds = order.slice(3).map((s) => s.replace(/-.*/, ''));
  assert.deepEqual(kinds, ['high', 'high', 'normal', 'normal', 'normal', 'normal', 'normal', 'normal', 'bulk', 'bulk', 'bulk', 'bulk'], `order: ${order.join(' ')}`);
  // The caller with two NORMAL messages is not kept waiting behind the one with four: turns.
  const normals = order.filter((s) => s.startsWith('normal-'));
  assert.ok(normals.slice(0, 4).filter((s) => s.startsWith('normal-app')).length === 2, `turns: ${normals.join(' ')}`);
});

  test(`bulk is never starved (${store}): while it waits, it gets LANE_BULK_MIN_SHARE of the deliveries however much other mail waits`, async (t) => {
  const { peer, svc } = await rigIn(t, store, { ...ONE_AT_A_TIME, AUTH_TOKENS_FILE: tokensFile(), LANE_BULK_MIN_SHARE: '25%' });
  const due = at(Date.now() + 1500);
  await batch(svc, 'bulk', Array.from({ length: 12 }, (_, i) => queued(`bulk-${i}`, 'PRIORITY_BULK', { send_at: due })));
  await batch(svc, 'app', Array.from({ length: 24 }, (_, i) => queued(`normal-${i}`, 'PRIORITY_NORMAL', { send_at: due })));
  await peer.until(() => peer.messages.length === 36, 15_000, 'all 36 delivered');
  const first = peer.messages.slice(0, 16).map(subjectOf);
  const bulk = first.filter((s) => s.startsWith('bulk-')).length;
  // A quarter of 16 is 4; claims of one or two at a time may shift one either way.
  assert.ok(bulk >= 3 && bulk <= 6, `${bulk} bulk among the first 16: ${first.join(' ')}`);
});
}

test('shares: a caller past its share of QUEUE_LIMIT, QUEUE_MAX_BYTES, OUTBOX_MAX_BYTES or IDEMPOTENCY_MAX_BYTES is refused with retry-after while another caller is still taken in', async (t) => {
  const { peer, svc } = await startRig(t, {}, {
    ...ONE_AT_A_TIME,
    AUTH_TOKENS_FILE: tokensFile(),
    QUEUE_LIMIT: '4',
    QUEUE_MAX_BYTES: String(4 * 1_048_576),
    OUTBOX_MAX_BYTES: String(1_048_576),
    IDEMPOTENCY_MAX_BYTES: String(65_536),
  });
  const refusedFor = async (p: Promise<unknown>, share: string): Promise<void> => {
    const err = await expectGrpcError(p);
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, `${share}: ${err.details}`);
    assert.match(err.details, new RegExp(share));
    assert.ok(Number(metadataValue(err, 'retry-after')) >= 1, 'with retry-after');
  };

  // QUEUE_LIMIT_PER_CALLER (2 of 4): the relay holds each message a while, so what is sent waits.
  peer.script = (c) => (c.stage === 'dot' ? { delay: 300 } : undefined);
  const held = [send(svc, 'bulk', { to: 'rcpt@example.com', subject: 'q-1', body: 'x' })];
  await peer.until(() => peer.count('DATA') + peer.count('BDAT') > 0, 5000, 'the first under way');
  held.push(...[2, 3].map((i) => send(svc, 'bulk', { to: 'rcpt@example.com', subject: `q-${i}`, body: 'x' })));
  await refusedFor(send(svc, 'bulk', { to: 'rcpt@example.com', subject: 'q-4', body: 'x' }), 'QUEUE_LIMIT_PER_CALLER');
  const other = send(svc, 'app', { to: 'rcpt@example.com', subject: 'q-app', body: 'x' });
  await Promise.all([...held, other]);

  // QUEUE_MAX_BYTES_PER_CALLER (2 MiB of 4): a 600 KB body holds about 1.4 MB (its request, its message) until it is sent.
  const big = 'y'.repeat(600_000);
  const first = send(svc, 'bulk', { to: 'rcpt@example.com', subject: 'big-1', body: big });
  await peer.until(() => peer.commands.filter((c) => c.verb === 'MAIL').length >= 5, 5000, 'the big one under way');
  await refusedFor(send(svc, 'bulk', { to: 'rcpt@example.com', subject: 'big-2', body: big }), 'QUEUE_MAX_BYTES_PER_CALLER');
  await Promise.all([first, send(svc, 'app', { to: 'rcpt@example.com', subject: 'big-app', body: big })]);

  // OUTBOX_MAX_BYTES_PER_CALLER (512 KiB of 1 MiB): messages due in an hour stay stored; each takes about 270 KB.
  const later = at(Date.now() + 3_600_000);
  const stored = { to: 'rcpt@example.com', body: 'z'.repeat(200_000), delivery: 'DELIVERY_QUEUED' as const, send_at: later };
  await send(svc, 'bulk', { ...stored, subject: 'o-1' });
  await refusedFor(send(svc, 'bulk', { ...stored, subject: 'o-2' }), 'OUTBOX_MAX_BYTES_PER_CALLER');
  assert.equal((await send(svc, 'app', { ...stored, subject: 'o-app' })).state, 'MESSAGE_STATE_QUEUED');

  // IDEMPOTENCY_MAX_BYTES_PER_CALLER (32 KiB of 64): about 1 KB a key.
  peer.script = undefined;
  let refusal: Promise<unknown> | undefined;
  for (let i = 0; i < 60 && refusal === undefined; i++) {
    const outcome = await send(svc, 'bulk', { to: 'rcpt@example.com', subject: `k-${i}`, body: 'x', idempotency_key: `key-${i}` }).then(
      () => undefined,
      (err: grpc.ServiceError) => err,
    );
    if (outcome !== undefined) refusal = Promise.reject(outcome);
  }
  assert.ok(refusal !== undefined, 'the keyed caller met its share');
  await refusedFor(refusal, 'IDEMPOTENCY_MAX_BYTES_PER_CALLER');
  await send(svc, 'app', { to: 'rcpt@example.com', subject: 'k-app', body: 'x', idempotency_key: 'key-app' });
});

test('OUTBOX_MAX_BYTES on Redis: a caller past its share is refused, then the whole is full for the other; a message sent or cancelled gives its bytes back', async (t) => {
  const { svc } = await rigIn(t, 'redis', { ...ONE_AT_A_TIME, AUTH_TOKENS_FILE: tokensFile(), OUTBOX_MAX_BYTES: String(1_048_576), OUTBOX_MAX_BYTES_PER_CALLER: String(700_000) });
  // Due in an hour, so they stay stored; each takes about 270 KB.
  const stored = { to: 'rcpt@example.com', body: 'z'.repeat(200_000), delivery: 'DELIVERY_QUEUED' as const, send_at: at(Date.now() + 3_600_000) };
  const refusedFor = async (p: Promise<unknown>, what: RegExp): Promise<void> => {
    const err = await expectGrpcError(p);
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.match(err.details, what);
  };
  const mine = [await send(svc, 'bulk', { ...stored, subject: 'o-1' }), await send(svc, 'bulk', { ...stored, subject: 'o-2' })];
  await refusedFor(send(svc, 'bulk', { ...stored, subject: 'o-3' }), /OUTBOX_MAX_BYTES_PER_CALLER/);
  await send(svc, 'app', { ...stored, subject: 'a-1' });
  await refusedFor(send(svc, 'app', { ...stored, subject: 'a-2' }), /the outbox \(OUTBOX_MAX_BYTES\)/);
  await new Promise((resolve, reject) => svc.mail.CancelMessage({ message_id: mine[0]?.message_id ?? '' }, as('bulk'), settle(resolve, reject)));
  assert.equal((await send(svc, 'app', { ...stored, subject: 'a-2' })).state, 'MESSAGE_STATE_QUEUED', 'room again once one is cancelled');
});

test('IDEMPOTENCY_MAX_BYTES on Redis: a caller whose live keys fill its share gets EKEYSFULL with retry-after, its repeats are still answered, and another caller is taken in', async (t) => {
  const { peer, svc } = await rigIn(t, 'redis', { AUTH_TOKENS_FILE: tokensFile(), IDEMPOTENCY_MAX_BYTES: String(65_536) });
  // About 1 KB a key: the share, half of 64 KiB, holds some thirty.
  let refused: grpc.ServiceError | undefined;
  let kept = 0;
  for (let i = 0; i < 60 && refused === undefined; i++) {
    refused = await send(svc, 'bulk', { to: 'rcpt@example.com', subject: `k-${i}`, body: 'x', idempotency_key: `key-${i}` }).then(
      () => void kept++,
      (err: grpc.ServiceError) => err,
    );
  }
  assert.ok(refused !== undefined, 'the keyed caller met its share');
  assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, refused.details);
  assert.match(refused.details, /IDEMPOTENCY_MAX_BYTES_PER_CALLER=32768/);
  assert.equal(metadataValue(refused, 'mailroom-error'), 'EKEYSFULL');
  assert.ok(Number(metadataValue(refused, 'retry-after')) >= 1, 'with retry-after');
  assert.ok(kept >= 25 && kept <= 32, `${kept} keys fit`);
  const sent = peer.messages.length;
  const again = await send(svc, 'bulk', { to: 'rcpt@example.com', subject: 'k-0', body: 'x', idempotency_key: 'key-0' });
  assert.equal(again.status, 'SUCCESS', 'a repeat of a key it holds is answered');
  assert.equal(peer.messages.length, sent, 'and not sent again');
  await send(svc, 'app', { to: 'rcpt@example.com', subject: 'k-app', body: 'x', idempotency_key: 'key-app' });
});

test('codes take turns by caller too: behind one caller\'s six codes, another caller\'s code goes second', async (t) => {
  const { peer, svc } = await startRig(t, {}, { ...ONE_AT_A_TIME, AUTH_TOKENS_FILE: tokensFile(), OTP_MAX_SENDS_PER_MINUTE: '0', METRICS_PORT: '0' });
  peer.script = (c) => (c.stage === 'dot' && c.total === 0 ? { delay: 3000 } : undefined);
  const plug = send(svc, 'app', { to: 'rcpt@example.com', subject: 'plug', body: 'x' });
  await peer.until(() => peer.count('DATA') + peer.count('BDAT') > 0, 5000, 'the plug under way');
  const theirs = [1, 2, 3, 4, 5, 6].map((i) => sendCode(svc, 'bulk', `bulk-${i}@example.com`));
  const depth = async (): Promise<number> => Number(/^mailroom_queue_depth (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${svc.service.metricsPort}/metrics`)).text())?.[1]);
  await eventually(async () => (await depth()) === 6, 5000, "the six codes' mail waiting");
  const mine = sendCode(svc, 'app', 'app-1@example.com');
  await Promise.all([plug, mine, ...theirs]);
  const order = peer.messages.map((m) => m.to[0] ?? '');
  assert.equal(order[0], 'rcpt@example.com');
  assert.ok(order.slice(1, 3).includes('app-1@example.com'), `order: ${order.join(' ')}`);
});

test('a code mail still queued when its code expires is never sent: SendCode fails, the relay sees nothing for the address', async (t) => {
  const { peer, svc } = await startRig(t, {}, { ...ONE_AT_A_TIME, AUTH_TOKENS_FILE: tokensFile(), OTP_LIFESPAN_SECONDS: '1' });
  peer.script = (c) => (c.stage === 'dot' && c.total === 0 ? { delay: 2500 } : undefined);
  const plug = send(svc, 'app', { to: 'rcpt@example.com', subject: 'plug', body: 'x' });
  await peer.until(() => peer.count('DATA') + peer.count('BDAT') > 0, 5000, 'the plug under way');
  const err = await expectGrpcError(sendCode(svc, 'app', 'late@example.com'));
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, err.details);
  await plug;
  // The connection is free again: had the code mail waited on, it would go now.
  await send(svc, 'app', { to: 'rcpt@example.com', subject: 'after', body: 'x' });
  await eventually(() => peer.withSubject('after').length === 1, 5000, 'the mail after');
  assert.equal(peer.messages.filter((m) => m.to.includes('late@example.com')).length, 0);
});
