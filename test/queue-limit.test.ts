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
