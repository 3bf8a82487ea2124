// A relay that says slow down: an SMTP peer that answers 421 "too many
// messages" (and hangs up) to any MAIL beyond 50 in the last second. mailroom
// slows to under it and fails nothing; when the peer relents, the pace climbs
// back. Seen through the public surface: the relay's log, the outbox's
// statuses, the metrics endpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Script } from './fault-peer.js';
import { eventually, recordingLogger, startRig } from './helpers.js';
import { watch } from './outbox-client.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { SendMailBatchResponse__Output } from '../src/generated/mail/SendMailBatchResponse.js';
import * as grpc from '@grpc/grpc-js';
import type { RunningService } from './helpers.js';

const LIMIT = 50;

/** Refuses MAIL beyond LIMIT in any second, as a relay's rate limit does; counts its refusals. */
function ratePeer(): { script: Script; refused: () => number } {
  const accepted: number[] = [];
  let refused = 0;
  return {
    refused: () => refused,
    script: (c) => {
      if (c.stage !== 'MAIL') return undefined;
      const now = Date.now();
      while (accepted.length > 0 && (accepted[0] as number) <= now - 1000) accepted.shift();
      if (accepted.length >= LIMIT) {
        refused++;
        return { reply: '421 4.7.0 Too many messages, slow down', close: true };
      }
      accepted.push(now);
      return undefined;
    },
  };
}

function batch(svc: RunningService, messages: SendEmailRequest[]): Promise<SendMailBatchResponse__Output> {
  return new Promise((resolve, reject) => svc.mail.SendMailBatch({ messages }, new grpc.Metadata(), { deadline: Date.now() + 20_000 }, (err, res) => (err ? reject(err) : resolve(res as SendMailBatchResponse__Output))));
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

/** The most messages the relay accepted in any one-second window. */
function busiestSecond(times: readonly number[]): number {
  let most = 0;
  for (let i = 0, j = 0; i < times.length; i++) {
    while ((times[i] as number) - (times[j] as number) >= 1000) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

test('421 "too many messages" above 50 a second: the pace settles under it, nothing fails, and it climbs back once the relay relents', async (t) => {
  const rate = ratePeer();
  const logs = recordingLogger('info');
  const { peer, svc } = await startRig(t, { script: rate.script }, { WORKERS: '2', RELAY_PACE_RECOVER_MS: '100', METRICS_PORT: '0' }, { log: logs.logger });
  const port = svc.service.metricsPort as number;
  const watcher = watch(svc, '');
  t.after(() => watcher.close());
  const messages = (tag: string, n: number): SendEmailRequest[] =>
    Array.from({ length: n }, (_, i) => ({ to: 'rcpt@example.com', subject: `${tag}-${i}`, body: 'x', delivery: 'DELIVERY_QUEUED' }));
  const sent = (): number => watcher.events.filter((e) => e.status?.state === 'MESSAGE_STATE_SENT').length;

  const first = await batch(svc, messages('slowed', 200));
  assert.ok(first.results.every((r) => r.code === 0));
  await eventually(() => sent() === 200, 20_000, '200 SENT');
  assert.equal(await metric(port, 'mailroom_relay_slowed'), 1, 'the pace is held down while the relay limits');
  const pace = await metric(port, 'mailroom_relay_pace_per_second');
  assert.ok(pace > 0 && pace <= LIMIT, `the pace (${pace}/s) is under the relay's limit`);
  // mailroom slowed down instead of hammering (unpaced, it met some 380 refusals for these 200), and nothing failed.
  assert.ok(rate.refused() < 100, `${rate.refused()} refusals`);
  assert.equal(watcher.events.filter((e) => e.status?.state === 'MESSAGE_STATE_FAILED' || e.status?.state === 'MESSAGE_STATE_DEFERRED').length, 0);
  assert.equal(peer.messages.length, 200, 'each delivered once');
  // Both connections hung up on at once is the relay's pace, not an outage: a warning, never an error.
  assert.deepEqual(logs.entries.filter((e) => e.level === 'error').map((e) => e.message), [], 'nothing logged as an error');
  const slowedDown = logs.entries.filter((e) => e.message.startsWith('pool down: the relay closed every connection asking us to slow down'));
  process.stdout.write(`# 421 with a hang-up: ${rate.refused()} refusals, the pool down ${slowedDown.length} times (warn)\n`);

  // The relay relents: clean replies raise the pace step by step until it is free.
  peer.script = undefined;
  const relented = peer.messages.length;
  await batch(svc, messages('free', 300));
  await eventually(() => sent() === 500, 20_000, '500 SENT');
  await eventually(async () => (await metric(port, 'mailroom_relay_slowed')) === 0, 10_000, 'the pace free again');
  const after = peer.messages.slice(relented).map((m) => m.at);
  assert.ok(busiestSecond(after) > LIMIT, `once free it sends faster than the old limit (busiest second: ${busiestSecond(after)})`);
});
