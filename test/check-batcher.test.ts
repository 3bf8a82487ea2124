// ValidateCode's batcher: checks made in one run of synchronous code reach
// the OTP actor as one event, in order, as soon as that run ends (not an
// event-loop turn later); a later run starts a new event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CheckBatcher } from '../src/otp/check-batcher.js';
import type { OtpMailbox, OtpRequest } from '../src/otp/requests.js';

function recorder(): { actor: OtpMailbox; events: OtpRequest[] } {
  const events: OtpRequest[] = [];
  return { actor: { send: (event: OtpRequest) => void events.push(event) }, events };
}

test('checks made together travel as one event, in the order they were made', async () => {
  const { actor, events } = recorder();
  const batcher = new CheckBatcher<string>(actor, { answer: () => undefined, fail: () => undefined });
  batcher.check('a@x', 'h1', 'a');
  batcher.check('b@x', 'h2', 'b');
  batcher.check('c@x', 'h3', 'c');
  assert.equal(events.length, 0, 'nothing is sent while the synchronous run goes on');
  await Promise.resolve();
  assert.equal(events.length, 1);
  const [first] = events;
  assert.ok(first?.type === 'code.checks');
  assert.deepEqual(
    first.checks.map((c) => c.key),
    ['a@x', 'b@x', 'c@x'],
  );
  batcher.check('d@x', 'h4', 'd');
  await Promise.resolve();
  assert.equal(events.length, 2, 'a later run makes a new event');
});

test('each check is answered with its own result, in order, once the actor replies', async () => {
  const { actor, events } = recorder();
  const got: string[] = [];
  const batcher = new CheckBatcher<string>(actor, { answer: (key, r) => got.push(`${key}=${r}`), fail: (key, e) => got.push(`${key}:${e.code}`) });
  for (const key of ['a@x', 'b@x', 'c@x']) batcher.check(key, 'h', key);
  await Promise.resolve();
  const [event] = events;
  assert.ok(event?.type === 'code.checks');
  assert.deepEqual(got, [], 'nobody is answered from inside the actor');
  event.reply.resolve([-1, 4, 0]);
  await Promise.resolve();
  assert.deepEqual(got, ['a@x=-1', 'b@x=4', 'c@x=0']);
});
