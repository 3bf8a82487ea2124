// SendMailBatch through the public surface: each message validated, limited
// and delivered as if sent alone, results in the request's order, one bad
// message failing only itself; idempotency keys shared with SendMail;
// QUEUED messages stored together.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { expectGrpcError, refusingRecipients, relayEnv, sendMail, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';
import { until } from './outbox-client.js';
import type { SendMailBatchRequest } from '../src/generated/mail/SendMailBatchRequest.js';
import type { SendMailBatchResponse__Output } from '../src/generated/mail/SendMailBatchResponse.js';
import { Outbox } from '../src/outbox/outbox.js';
import type { NewMessage, OutboxStore } from '../src/outbox/store.js';
import { Composer } from '../src/mail/compose.js';
import { PLAIN } from '../src/mail/draft.js';
import { DkimSigner } from '../src/mail/dkim.js';
import { generateKeyPairSync } from 'node:crypto';

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp({ extra: refusingRecipients('nobody@') });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2', MAX_BATCH: '50' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

function batch(req: SendMailBatchRequest, deadlineMs = 15_000): Promise<SendMailBatchResponse__Output> {
  return new Promise((resolve, reject) =>
    svc.mail.SendMailBatch(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as SendMailBatchResponse__Output))),
  );
}

test('each message has its own outcome, in order: sent, invalid, refused by the relay; only the good ones reach it', async () => {
  const before = smtp.messages.length;
  const res = await batch({
    messages: [
      { to: 'a@example.com', subject: 'one', body: 'b' },
      { to: 'not an address', subject: 'two', body: 'b' },
      { to: 'nobody@example.com', subject: 'three', body: 'b' },
      { to: 'c@example.com', subject: 'four', body: 'b', attachments: [{ filename: '../x', content: Buffer.from('x') }] },
      { to: 'd@example.com', subject: 'five', body: 'b' },
    ],
  });
  const summary = res.results.map((r) => [r.code, r.error_code, r.response?.status ?? '']);
  assert.deepEqual(summary, [
    [0, '', 'SUCCESS'],
    [grpc.status.INVALID_ARGUMENT, 'EINVALID', ''],
    [grpc.status.INVALID_ARGUMENT, 'ERECIPIENT', ''],
    [grpc.status.INVALID_ARGUMENT, 'EINVALID', ''],
    [0, '', 'SUCCESS'],
  ]);
  assert.match(res.results[1]?.message ?? '', /to: "not an address" is not an address/);
  assert.match(res.results[3]?.message ?? '', /not a path/);
  assert.match(res.results[0]?.response?.smtp_response ?? '', /^250 /);
  const subjects = (await smtp.waitForMessages(before + 2)).slice(before).map((m) => /^Subject: (.*)$/m.exec(m.raw)?.[1]?.trim());
  assert.deepEqual(subjects.sort(), ['five', 'one']);
});

test('an idempotency key is the same key in a batch and in SendMail: one delivery, one message id', async () => {
  const before = smtp.messages.length;
  const req = { to: 'idem@example.com', subject: 'once', body: 'b', idempotency_key: 'batch-key-1' };
  const first = await batch({ messages: [req, { ...req, idempotency_key: 'batch-key-2' }] });
  const again = await sendMail(svc, req);
  assert.equal(again.message_id, first.results[0]?.response?.message_id);
  const changed = await batch({ messages: [{ ...req, body: 'different' }] });
  assert.equal(changed.results[0]?.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(changed.results[0]?.error_code, 'EIDEMPOTENCY');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(smtp.messages.length - before, 2);
});

test('an empty batch and one over MAX_BATCH are refused whole', async () => {
  for (const messages of [[], Array.from({ length: 51 }, (_, i) => ({ to: `x${i}@example.com`, subject: 's', body: 'b' }))]) {
    const err = await expectGrpcError(batch({ messages }));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /messages: 1 to 50 \(MAX_BATCH; got \d+\)/);
  }
});

test('a batch of QUEUED messages is stored and delivered; a bad one among them fails alone', async () => {
  const messages = Array.from({ length: 40 }, (_, i) => ({ to: `q${i}@example.com`, subject: `queued ${i}`, body: 'b', delivery: 'DELIVERY_QUEUED' as const }));
  messages[7] = { ...messages[7]!, to: 'broken' };
  const res = await batch({ messages });
  assert.equal(res.results.filter((r) => r.response?.state === 'MESSAGE_STATE_QUEUED').length, 39);
  assert.equal(res.results[7]?.error_code, 'EINVALID');
  const last = res.results[39]?.response?.message_id ?? '';
  await until(svc, last, 'MESSAGE_STATE_SENT');
});

test('the messages of a batch reach the store in one go, so that they share one commit, even when each is signed apart', async () => {
  // Signatures are made in libuv's pool and come back one by one.
  const signer = new DkimSigner({ domain: 'example.com', selector: 's', algorithm: 'rsa-sha256', key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey });
  const seen: number[] = [];
  // A store that says what it was handed in each call: one accept() is one commit.
  const store = {
    accept: (messages: readonly NewMessage[]) => {
      seen.push(messages.length);
      return Promise.resolve(messages.map((m) => ({ kind: 'accepted' as const, status: { id: m.id, state: 'queued' as const, attempts: 0, lastResponse: '', errorCode: '', acceptedAt: 0, updatedAt: 0, nextAttemptAt: 0 } })));
    },
  } as Partial<OutboxStore> as OutboxStore;
  const outbox = new Outbox(store, { maxDelayMs: 60_000, maxAgeMs: 60_000 }, new Composer({ name: '', address: 'from@example.com' }, 1_000_000, signer));
  const b = outbox.batch();
  const all = Array.from({ length: 25 }, (_, i) => b.add({ ...PLAIN, to: [{ name: '', address: `u${i}@example.com` }], subject: `s${i}`, text: 't' }, { caller: '' }));
  b.close();
  await Promise.all(all);
  assert.deepEqual(seen, [25]);
});
