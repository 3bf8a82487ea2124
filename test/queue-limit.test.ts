// The bounded queue: beyond QUEUE_LIMIT waiting messages SendMail answers
// RESOURCE_EXHAUSTED with retry-after at once, and sends nothing for it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startSmtp, startService, relayEnv, sendMail, type SmtpPeer, type RunningService } from './helpers.js';
import { frame, rawCall } from './raw-grpc.js';

let smtp: SmtpPeer | undefined;
let svc: RunningService | undefined;
after(async () => {
  await svc?.close();
  await smtp?.close();
});

test('a full queue: RESOURCE_EXHAUSTED with retry-after, the rest delivered', async () => {
  smtp = await startSmtp({ dataDelayMs: 50 });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '1', QUEUE_LIMIT: '3', QUEUE_LIMIT_PER_CALLER: '3' }));
  const running = svc;
  const outcomes = await Promise.all(
    Array.from({ length: 10 }, (_, i) =>
      sendMail(running, { to: `u${i}@example.com`, subject: `n${i}`, body: 'b' }).then(
        () => ({ ok: true as const }),
        (err: grpc.ServiceError) => ({ ok: false as const, err }),
      ),
    ),
  );
  const refused = outcomes.flatMap((o) => (o.ok ? [] : [o.err]));
  const delivered = outcomes.filter((o) => o.ok).length;
  // One in flight on the connection and three waiting fit; the rest do not.
  assert.ok(refused.length >= 5, `refused ${refused.length}`);
  for (const err of refused) {
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.deepEqual(err.metadata.get('retry-after'), ['1']);
    assert.deepEqual(err.metadata.get('mailroom-error'), ['EQUEUEFULL']);
  }
  assert.equal(delivered + refused.length, 10);
  assert.equal(smtp.messages.length, delivered, 'nothing refused reached the relay');
});

test('QUEUE_MAX_BYTES: a call that would take the queued and in-flight bytes over it is RESOURCE_EXHAUSTED at once; room comes back as mail goes out', async (t) => {
  const relay = await startSmtp({ dataDelayMs: 300 });
  // 1 MiB for everything held; each 100 KB call holds its decoded request (100 KB) and its message (~140 KB reserved).
  const service = await startService(relayEnv(relay.port, { WORKERS: '1', QUEUE_MAX_BYTES: '1048576', QUEUE_MAX_BYTES_PER_CALLER: '1048576' }));
  t.after(async () => {
    await service.close();
    await relay.close();
  });
  const body = 'x'.repeat(100_000);
  const outcomes = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      sendMail(service, { to: `u${i}@example.com`, subject: `big ${i}`, body }).then(
        () => 'SUCCESS',
        (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
          assert.match(err.details, /QUEUE_MAX_BYTES=1048576/);
          assert.deepEqual(err.metadata.get('retry-after'), ['1']);
          return 'REFUSED';
        },
      ),
    ),
  );
  const ok = outcomes.filter((o) => o === 'SUCCESS').length;
  assert.ok(ok >= 3 && ok <= 4, `${ok} of 8 fit in 1 MiB at about 240 KB each`);
  assert.equal(relay.messages.length, ok, 'nothing refused reached the relay');
  // Everything went out: the bytes are free again.
  assert.equal((await sendMail(service, { to: 'later@example.com', subject: 'after', body })).status, 'SUCCESS');
});

test('QUEUE_MAX_BYTES: once a large request was refused, a new call is refused at its headers, before its body arrives; a small one fits again once room comes back', async (t) => {
  const relay = await startSmtp({ dataDelayMs: 400 });
  const service = await startService(relayEnv(relay.port, { WORKERS: '1', QUEUE_MAX_BYTES: '1048576', QUEUE_MAX_BYTES_PER_CALLER: '1048576', GRPC_RECEIVE_TIMEOUT_MS: '5000' }));
  t.after(async () => {
    await service.close();
    await relay.close();
  });
  const body = 'x'.repeat(300_000);
  // Four large calls: about two fit in 1 MiB, and the relay holds them 400 ms each.
  const sends = Array.from({ length: 4 }, (_, i) => sendMail(service, { to: `u${i}@example.com`, subject: `big ${i}`, body }));
  for (const s of sends) s.catch(() => undefined);
  const refused = await Promise.any(sends.map((s) => s.then(() => Promise.reject(new Error('delivered')), (err: grpc.ServiceError) => err)));
  assert.equal(refused.code, grpc.status.RESOURCE_EXHAUSTED, refused.details);
  // While the others are still with the relay: a call that claims 300 KB and sends 10 bytes.
  const answer = await rawCall(`127.0.0.1:${service.service.port}`, '/mail.MailService/SendMail', frame(Buffer.alloc(10), 300_000), false);
  assert.equal(answer.status, grpc.status.RESOURCE_EXHAUSTED, answer.message);
  assert.ok(answer.ms < 1000, `answered after ${answer.ms} ms, not at the receive deadline`);
  assert.match(answer.message, /QUEUE_MAX_BYTES/);
  const outcomes = await Promise.allSettled(sends);
  assert.equal(relay.messages.length, outcomes.filter((o) => o.status === 'fulfilled').length);
  // Room came back: a small call fits again.
  assert.equal((await sendMail(service, { to: 'later@example.com', subject: 'small', body: 'b' })).status, 'SUCCESS');
});
