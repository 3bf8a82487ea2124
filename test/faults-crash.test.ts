// A connection actor that throws (a bug in our code, not the relay's fault)
// must not take the pool down: the supervisor treats it as a connection gone
// down, hands its job to another, and starts a fresh actor. boot() wires only
// the real machine, so this test composes the supervisor itself with a
// connection machine that throws once, as STYLE.md's `provide` allows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subject } from 'rxjs';
import { createActor, waitFor } from 'xstate';
import { supervisorMachine } from '../src/actors/supervisor.js';
import { smtpConnectionMachine } from '../src/actors/smtp-connection.js';
import { createJob, type Delivered, type MailJob } from '../src/mail/job.js';
import { composeMessage } from '../src/mail/compose.js';
import { PLAIN } from '../src/mail/draft.js';
import { parseAddressList, type Address } from '../src/mail/address.js';
import { FaultPeer } from './fault-peer.js';
import { recordingLogger } from './helpers.js';

function address(text: string): Address {
  const parsed = parseAddressList(text);
  assert.ok(parsed.ok);
  return parsed.value[0] as Address;
}

test('a connection actor that throws is replaced; its job goes through on another connection and nothing else fails', { timeout: 15_000 }, async (t) => {
  // NOOPs answered late: a job sent while one is unanswered lands mid-NOOP, where the bomb is.
  const peer = await FaultPeer.start({ script: (c) => (c.stage === 'NOOP' ? { delay: 30 } : undefined) });
  t.after(() => peer.close());
  const { logger, entries } = recordingLogger('info');
  let bombs = 1;
  // The bug: an exception in the transition that takes a job.
  const crashy = smtpConnectionMachine.provide({
    guards: {
      holdsJobs: ({ context }) => {
        const holds = context.pending.length + context.inFlight;
        if (holds > 0 && bombs > 0) {
          bombs -= 1;
          throw new Error('boom: a bug in the connection machine');
        }
        return holds > 0;
      },
    },
  });
  const jobs$ = new Subject<MailJob>();
  const supervisor = createActor(supervisorMachine.provide({ actors: { connection: crashy } }), {
    input: {
      jobs$,
      log: logger,
      options: {
        workers: 2,
        queueLimit: 100,
        queueLimitPerCaller: 100,
        bulkShare: 0.1,
        maxAttempts: 3,
        rateLimitPerSecond: 0,
        paceRecoverMs: 1000,
        queueTimeoutMs: 5000,
        unreachableAfterMs: 15_000,
        closeTimeoutMs: 500,
        connection: {
          keepaliveMs: 10,
          maxMessagesPerConnection: 100,
          pipelineDepth: 4,
          pipelineDepthMax: 4,
          backoffBaseMs: 10,
          backoffMaxMs: 50,
          session: {
            host: '127.0.0.1',
            port: peer.port,
            tls: 'none',
            ca: undefined,
            user: undefined,
            password: undefined,
            heloName: 'test.local',
            connectTimeoutMs: 500,
            greetingTimeoutMs: 500,
            commandTimeoutMs: 500,
            dataTimeoutMs: 1000,
          },
        },
      },
    },
  });
  const failures: unknown[] = [];
  supervisor.subscribe({ error: (err) => failures.push(err) });
  supervisor.start();
  t.after(async () => {
    supervisor.send({ type: 'shutdown', timeoutMs: 500 });
    await waitFor(supervisor, (s) => s.status !== 'active', { timeout: 5000 });
  });
  await peer.until(() => peer.count('NOOP') >= 2, 2000, 'the pool idling');

  const from = address('sender@example.com');
  const results: Promise<Delivered>[] = [];
  const submit = (i: number): Promise<Delivered> => {
    const draft = { ...PLAIN, to: [address(`r${i}@example.com`)], subject: `crash-${i}`, text: 'x' };
    const { job, done } = createJob(composeMessage(draft, from), { deadline: Infinity });
    jobs$.next(job);
    results.push(done);
    return done;
  };
  // Each probe goes out the moment the peer holds a NOOP unanswered, so it
  // meets a pinging connection whatever the machine's load; the bomb fires on
  // the first one that does.
  for (let probe = 0; probe < 20 && bombs > 0; probe++) {
    const noops = peer.count('NOOP');
    await peer.until(() => peer.count('NOOP') > noops, 2000, 'a NOOP in flight');
    await submit(results.length);
  }
  while (results.length < 30) {
    submit(results.length);
    await new Promise((r) => setTimeout(r, 3));
  }
  const delivered = await Promise.all(results);
  assert.equal(bombs, 0, 'the bug did fire');
  assert.equal(delivered.length, 30);
  assert.equal(new Set(peer.messages.map((m) => m.messageId)).size, 30, 'every job delivered');
  assert.equal(peer.messages.length, 30, 'none twice: the crashed job had not started');
  assert.equal(supervisor.getSnapshot().status, 'active', 'the supervisor lives on');
  assert.deepEqual(failures, []);
  assert.ok(entries.some((e) => e.level === 'error' && e.message === 'SMTP connection actor crashed'));
  assert.deepEqual(peer.violations, []);
});
