// The bounded queue: beyond QUEUE_LIMIT waiting messages SendMail answers
// RESOURCE_EXHAUSTED with retry-after at once, and sends nothing for it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startSmtp, startService, relayEnv, sendMail, type SmtpPeer, type RunningService } from './helpers.js';

let smtp: SmtpPeer | undefined;
let svc: RunningService | undefined;
after(async () => {
  await svc?.close();
  await smtp?.close();
});

test('a full queue: RESOURCE_EXHAUSTED with retry-after, the rest delivered', async () => {
  smtp = await startSmtp({ dataDelayMs: 50 });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '1', QUEUE_LIMIT: '3' }));
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
  // 1 MiB for everything held; each 100 KB call holds its message (~100 KB) and its decoded request (~200 KB).
  const service = await startService(relayEnv(relay.port, { WORKERS: '1', QUEUE_MAX_BYTES: '1048576' }));
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
  assert.ok(ok >= 2 && ok <= 3, `${ok} of 8 fit in 1 MiB at about 300 KB each`);
  assert.equal(relay.messages.length, ok, 'nothing refused reached the relay');
  // Everything went out: the bytes are free again.
  assert.equal((await sendMail(service, { to: 'later@example.com', subject: 'after', body })).status, 'SUCCESS');
});
