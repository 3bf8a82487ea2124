// The supervisor's per-connection job slots behave like the Map they replace
// (see job-slots.ts for why they are not one): order of first filling,
// a refilled slot keeps its place, an emptied one leaves the order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobSlots } from '../src/actors/job-slots.js';
import { createJob, type MailJob } from '../src/mail/job.js';
import type { OutgoingMessage } from '../src/mail/compose.js';

function job(): MailJob {
  return createJob({} as OutgoingMessage, Infinity).job;
}

test('slots keep the order in which connections got their job, like a Map', () => {
  const slots = new JobSlots();
  const [a, b, c, d] = [job(), job(), job(), job()];
  slots.set('c2', a);
  slots.set('c1', b);
  slots.set('c3', c);
  assert.deepEqual([...slots.keys()], ['c2', 'c1', 'c3']);
  assert.equal(slots.size, 3);
  // replacing the job of a busy connection keeps its place
  slots.set('c1', d);
  assert.deepEqual([...slots.keys()], ['c2', 'c1', 'c3']);
  assert.equal(slots.get('c1'), d);
  // emptied and filled again: it goes last
  assert.equal(slots.delete('c2'), true);
  assert.equal(slots.delete('c2'), false);
  assert.equal(slots.has('c2'), false);
  assert.equal(slots.get('c2'), undefined);
  slots.set('c2', a);
  assert.deepEqual([...slots.keys()], ['c1', 'c3', 'c2']);
  assert.deepEqual(slots.values(), [d, c, a]);
});

test('clear empties every slot', () => {
  const slots = new JobSlots();
  slots.set('c1', job());
  slots.set('c2', job());
  slots.clear();
  assert.equal(slots.size, 0);
  assert.deepEqual([...slots.keys()], []);
  assert.equal(slots.has('c1'), false);
  assert.equal(slots.delete('c1'), false);
});
