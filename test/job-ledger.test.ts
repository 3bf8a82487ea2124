// The ledger's invariant: every unsettled job the supervisor took in is in
// exactly one place (queued, waiting for a retry, or held by one connection),
// and its `place` says which. Driven here by thousands of random moves, the
// way the supervisor makes them, with the places checked after each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobLedger } from '../src/actors/job-ledger.js';
import { createJob, type MailJob } from '../src/mail/job.js';
import type { OutgoingMessage } from '../src/mail/compose.js';
import { prng } from './helpers.js';

const message: OutgoingMessage = { messageId: '<m@x>', envelope: { from: 'a@x.org', to: ['b@x.org'] }, raw: 'Subject: x\r\n\r\nx\r\n' };
const job = (): MailJob => createJob(message, { deadline: Infinity }).job;

test('a job is in exactly one place after any sequence of moves, and its place says which', () => {
  const seed = Number(process.env.LEDGER_SEED ?? Date.now() % 1_000_000);
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T | undefined => items[Math.floor(random() * items.length)];
  const ledger = new JobLedger();
  const cids = ['c1', 'c2', 'c3'];
  // The model: what the supervisor believes, kept by the test on its own.
  const queued: MailJob[] = [];
  const retrying = new Set<MailJob>();
  const held = new Map<string, MailJob[]>(cids.map((c) => [c, []]));
  const out = new Set<MailJob>();
  /** Which job is at the head is the ledger's to say (the second test checks the order). */
  const takeHead = (): MailJob => {
    const j = ledger.peek() as MailJob;
    queued.splice(queued.indexOf(j), 1);
    return j;
  };
  for (let step = 0; step < 20_000; step++) {
    const heldAll = [...held.values()].flat();
    const r = random();
    if (r < 0.25) {
      const j = job();
      ledger.admit(j);
      queued.push(j);
    } else if (r < 0.45 && queued.length > 0) {
      const cid = pick(cids) as string;
      const head = takeHead();
      assert.equal(ledger.hand(cid), head, `seed ${seed}: hand gives the head of the queue`);
      held.get(cid)?.push(head);
    } else if (r < 0.55 && heldAll.length > 0) {
      const j = pick(heldAll) as MailJob;
      ledger.release(j);
      for (const list of held.values()) if (list.includes(j)) list.splice(list.indexOf(j), 1);
      out.add(j);
    } else if (r < 0.65 && heldAll.length > 0) {
      const j = pick(heldAll) as MailJob;
      for (const list of held.values()) if (list.includes(j)) list.splice(list.indexOf(j), 1);
      ledger.giveBack(j);
      queued.push(j);
    } else if (r < 0.72 && heldAll.length > 0) {
      const j = pick(heldAll) as MailJob;
      for (const list of held.values()) if (list.includes(j)) list.splice(list.indexOf(j), 1);
      ledger.deferRetry(j);
      retrying.add(j);
    } else if (r < 0.8 && retrying.size > 0) {
      const j = pick([...retrying]) as MailJob;
      assert.equal(ledger.retryDue(j), true);
      retrying.delete(j);
      queued.push(j);
    } else if (r < 0.83) {
      const cid = pick(cids) as string;
      const list = held.get(cid) as MailJob[];
      ledger.reclaim(cid);
      queued.push(...list.splice(0));
    } else if (r < 0.86 && queued.length > 0) {
      const victim = pick(queued) as MailJob;
      for (const j of ledger.removeQueued((x) => x === victim)) {
        queued.splice(queued.indexOf(j), 1);
        out.add(j);
      }
    } else if (r < 0.87) {
      for (const j of ledger.takeWaiting()) out.add(j);
      queued.length = 0;
      retrying.clear();
    }
    // The invariant, after every move.
    const places = new Map<MailJob, string>();
    const note = (j: MailJob, place: string): void => {
      assert.equal(places.get(j), undefined, `seed ${seed} step ${step}: job ${j.id} is ${places.get(j)} and ${place} at once`);
      places.set(j, place);
    };
    for (const j of queued) note(j, 'queued');
    for (const j of retrying) note(j, 'retrying');
    for (const [cid, list] of held) for (const j of list) note(j, `held:${cid}`);
    for (const [j, place] of places) {
      assert.equal(place.startsWith('held') ? `held:${j.holder}` : j.place, place, `seed ${seed} step ${step}: job ${j.id}`);
    }
    for (const j of out) assert.equal(j.place, 'out', `seed ${seed} step ${step}: job ${j.id} left the ledger`);
    assert.equal(ledger.queued, queued.length, `seed ${seed} step ${step}: queue length`);
    assert.equal(ledger.waitingRetry, retrying.size);
    assert.equal(ledger.heldCount, [...held.values()].reduce((n, l) => n + l.length, 0));
    for (const cid of cids) assert.equal(ledger.holding(cid), held.get(cid)?.length);
    assert.equal(ledger.empty, places.size === 0);
  }
});

test('jobs that come back go ahead of new ones, in the order they came back', () => {
  const ledger = new JobLedger();
  const [a, b, c, d] = [job(), job(), job(), job()] as [MailJob, MailJob, MailJob, MailJob];
  for (const j of [a, b, c, d]) ledger.admit(j);
  ledger.hand('c1');
  ledger.hand('c1');
  ledger.giveBack(a);
  ledger.giveBack(b);
  assert.deepEqual([ledger.hand('c2'), ledger.hand('c2'), ledger.hand('c2'), ledger.hand('c2')], [a, b, c, d]);
});

test('a job the ledger does not hold cannot be released: that would be a second owner', () => {
  const ledger = new JobLedger();
  const j = job();
  ledger.admit(j);
  assert.throws(() => ledger.release(j), /not held/);
  ledger.hand('c1');
  ledger.release(j);
  assert.throws(() => ledger.release(j), /not held/);
});
