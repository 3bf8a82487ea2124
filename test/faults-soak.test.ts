// Soak: 2,000 mails while the peer drops a random 5% of connections in the
// middle of DATA (or of a BDAT chunk, when it offers CHUNKING and several
// messages are in flight on each connection). Every call gets a reply; every
// successful reply matches a message the peer accepted (by Message-ID);
// duplicates come only from drops after the final dot or BDAT LAST, where
// the client cannot know, and are counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { mail, prng, sendMail, startRig } from './helpers.js';
import type { FaultContext, Fault } from './fault-peer.js';

for (const chunking of [false, true]) {
  const how = chunking ? 'BDAT, 4 in flight a connection' : 'DATA';
  test(`soak (${how}): 2,000 mails, 5% of connections dropped mid-message: every call answered, nothing lost`, { timeout: 90_000 }, (t) => soak(t, chunking));
}

async function soak(t: { diagnostic(s: string): void; after(fn: () => Promise<void>): void }, chunking: boolean): Promise<void> {
  const total = 2000;
  const inFlight = 200;
  const seed = Number(process.env.SOAK_SEED ?? Date.now() % 1_000_000);
  // First, so that a failing run can be replayed whatever fails and wherever.
  t.diagnostic(`SOAK_SEED=${seed} replays this run`);
  const random = prng(seed);
  let dropsMidData = 0;
  // Half of the drops come while the data streams in, half just after the
  // final dot (the relay has it all but never says so): the ambiguous case.
  const afterDot = new Set<number>();
  const script = (c: FaultContext): Fault | undefined => {
    if (c.stage === 'body') {
      const r = random();
      if (r < 0.025) {
        dropsMidData++;
        return { drop: true };
      }
      if (r < 0.05) afterDot.add(c.conn);
      return undefined;
    }
    if (c.stage === 'dot' && afterDot.delete(c.conn)) return { drop: true };
    return undefined;
  };
  const { peer, svc } = await startRig(t, { script, chunking }, {
    WORKERS: '5',
    QUEUE_LIMIT: String(total),
    SEND_MAX_ATTEMPTS: '6',
    SMTP_BACKOFF_BASE_MS: '5',
    SMTP_BACKOFF_MAX_MS: '40',
    QUEUE_TIMEOUT_MS: '60000',
  });

  const started = Date.now();
  const outcomes: ({ ok: true; id: string; subject: string } | { ok: false; code: number; details: string })[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const req = mail(`soak-${next++}`);
      try {
        const res = await sendMail(svc, req, { deadline: Date.now() + 30_000 });
        outcomes.push({ ok: true, id: res.message_id, subject: req.subject });
      } catch (err) {
        const e = err as grpc.ServiceError;
        outcomes.push({ ok: false, code: e.code, details: e.details });
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const seconds = (Date.now() - started) / 1000;

  assert.equal(outcomes.length, total, 'every call got a reply');
  const failures = outcomes.filter((o) => !o.ok);
  assert.deepEqual(failures, [], 'with 6 attempts at 5% loss every mail goes through');

  const accepted = new Map<string, number>();
  for (const m of peer.messages) {
    assert.ok(m.messageId !== undefined, 'every message carries a Message-ID');
    accepted.set(m.messageId, (accepted.get(m.messageId) ?? 0) + 1);
  }
  for (const o of outcomes) if (o.ok) assert.ok(accepted.has(o.id), `reply ${o.id} matches a message the peer accepted`);
  const replied = new Set(outcomes.flatMap((o) => (o.ok ? [o.id] : [])));
  assert.equal(replied.size, total, 'one distinct Message-ID per call');
  for (const id of accepted.keys()) assert.ok(replied.has(id), `the peer's ${id} belongs to a call`);
  const duplicates = peer.messages.length - accepted.size;
  assert.ok(duplicates <= peer.ambiguous, `${duplicates} duplicates, ${peer.ambiguous} ambiguous drops: every duplicate is explained by one`);
  assert.deepEqual(peer.violations, []);

  t.diagnostic(`${total} mails in ${seconds.toFixed(2)} s (${Math.round(total / seconds)}/s) over ${peer.connections.length} connections`);
  t.diagnostic(`drops mid-message ${dropsMidData}, after the final dot or BDAT LAST ${peer.ambiguous}; duplicates delivered ${duplicates}`);
  if (chunking) assert.ok(peer.count('BDAT') >= total && peer.count('DATA') === 0, 'every message went as BDAT');
}
