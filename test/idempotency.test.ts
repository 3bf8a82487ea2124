// idempotency_key: a retried SendMail inside the window gets the first result
// instead of a second mail; a failed send is forgotten so a retry retries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { IdempotencyCache, entryBytes } from '../src/mail/idempotency.js';
import type { Delivered } from '../src/mail/job.js';
import { MailroomError } from '../src/errors.js';
import { startSmtp, startService, relayEnv, sendMail, expectGrpcError, type SmtpPeer, type RunningService } from './helpers.js';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp({ dataDelayMs: 20 });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

test('the same key and message, concurrently and later: one mail, one message id', async () => {
  const before = smtp.messages.length;
  const req = { to: 'ann@example.com', subject: 'order 42 shipped', body: 'b', idempotency_key: 'order-42-shipped' };
  const [a, b] = await Promise.all([sendMail(svc, req), sendMail(svc, req)]);
  const c = await sendMail(svc, req);
  assert.equal(smtp.messages.length, before + 1);
  assert.equal(a.message_id, b.message_id);
  assert.equal(a.message_id, c.message_id);
  assert.equal(a.smtp_response, c.smtp_response);
});

test('the same key with a different message is FAILED_PRECONDITION and sends nothing', async () => {
  await sendMail(svc, { to: 'ann@example.com', subject: 'first', body: 'b', idempotency_key: 'k-reused' });
  const count = smtp.messages.length;
  const err = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 'second', body: 'b', idempotency_key: 'k-reused' }));
  assert.equal(err.code, grpc.status.FAILED_PRECONDITION);
  assert.deepEqual(err.metadata.get('mailroom-error'), ['EIDEMPOTENCY']);
  assert.equal(smtp.messages.length, count);
});

test('without a key every call sends; a malformed key is INVALID_ARGUMENT', async () => {
  const before = smtp.messages.length;
  await sendMail(svc, { to: 'ann@example.com', subject: 'no key', body: 'b' });
  await sendMail(svc, { to: 'ann@example.com', subject: 'no key', body: 'b' });
  assert.equal(smtp.messages.length, before + 2);
  const err = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 's', body: 'b', idempotency_key: 'has space' }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
});

const delivered = (id: string): Delivered => ({ messageId: id, reply: { code: 250, enhanced: undefined, text: 'ok' }, attempts: 1 });

test('the cache: entries expire after the window; a failure is forgotten at once', async () => {
  let now = 0;
  const cache = new IdempotencyCache(1_000, 1_000_000, () => now);
  let sends = 0;
  const send = (): Promise<Delivered> => Promise.resolve(delivered(`<m${++sends}@x>`));
  assert.equal(cache.run('k', 'f', send).first, true);
  assert.equal(cache.run('k', 'f', send).first, false);
  assert.equal((await cache.run('k', 'f', send).result).messageId, '<m1@x>');
  now = 1_000;
  assert.equal(cache.run('k', 'f', send).first, true, 'expired');
  assert.throws(() => cache.run('k', 'other', send), (e: unknown) => e instanceof MailroomError && e.code === 'EIDEMPOTENCY');

  const failing = cache.run('bad', 'f', () => Promise.reject(new MailroomError('ECONNECTION', 'lost')));
  await assert.rejects(failing.result);
  assert.equal(cache.run('bad', 'f', send).first, true, 'a failed send is not remembered');
});

test('the cache: bounded in bytes; a live key is never forgotten, a new one is refused until the oldest expires', () => {
  let now = 0;
  const cache = new IdempotencyCache(60_000, 3 * entryBytes('a'), () => now);
  const send = (): Promise<Delivered> => Promise.resolve(delivered('<m@x>'));
  for (const key of ['a', 'b', 'c']) assert.equal(cache.run(key, 'f', send).first, true);
  now = 20_000;
  assert.throws(
    () => cache.run('d', 'f', send),
    (e: unknown) => e instanceof MailroomError && e.code === 'EKEYSFULL' && e.retryAfterSeconds === 40,
    'full of live keys: refused, with the wait until the oldest expires',
  );
  assert.equal(cache.run('a', 'f', send).first, false, 'a is still remembered: its retry gets the first result');
  now = 60_000;
  assert.equal(cache.run('d', 'f', send).first, true, 'once a, b and c expired there is room');
});

test('the cache: the same key from two callers is two keys', () => {
  const cache = new IdempotencyCache(60_000, 1_000_000, () => 0);
  const send = (): Promise<Delivered> => Promise.resolve(delivered('<m@x>'));
  assert.equal(cache.run('order-43', 'f', send, 'shop').first, true);
  assert.equal(cache.run('order-43', 'other message', send, 'squatter').first, true, 'no FAILED_PRECONDITION for the real sender');
});
