// The queue's order as pure logic (the lanes' order through the wire is
// lanes.test.ts's): lanes first, callers taking turns within one, a job
// that came back ahead of its lane, and bulk's least share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LaneQueue } from '../src/actors/lane-queue.js';
import type { Lane } from '../src/mail/lane.js';

interface Item {
  readonly lane: Lane;
  readonly owner: string;
  readonly name: string;
}

const item = (lane: Lane, owner: string, name: string): Item => ({ lane, owner, name });
const drain = (q: LaneQueue<Item>): string[] => {
  const out: string[] = [];
  for (let i = q.shift(); i !== undefined; i = q.shift()) out.push(i.name);
  return out;
};

test('lanes in order; within a lane callers take turns; a job that came back goes first in its lane', () => {
  const q = new LaneQueue<Item>(0);
  for (let i = 0; i < 4; i++) q.push(item(2, 'big', `big${i}`));
  q.push(item(2, 'small', 'small0'));
  q.push(item(3, 'big', 'bulk0'));
  q.push(item(0, '', 'code'));
  q.pushBack(item(2, 'big', 'back'));
  q.push(item(1, 'small', 'high'));
  assert.equal(q.length, 9);
  assert.deepEqual(drain(q), ['code', 'high', 'back', 'big0', 'small0', 'big1', 'big2', 'big3', 'bulk0']);
  assert.equal(q.length, 0);
});

test('bulk gets its share while others wait: one in four at 25%, and none owed once it had nothing', () => {
  const q = new LaneQueue<Item>(0.25);
  for (let i = 0; i < 30; i++) q.push(item(2, 'a', 'n'));
  for (let i = 0; i < 10; i++) q.push(item(3, 'b', 'B'));
  const first = [];
  for (let i = 0; i < 20; i++) first.push(q.shift()?.name);
  assert.equal(first.filter((n) => n === 'B').length, 5, first.join(''));
  assert.deepEqual(first.slice(0, 4), ['n', 'n', 'n', 'B']);
  const idle = new LaneQueue<Item>(0.25);
  for (let i = 0; i < 6; i++) idle.push(item(2, 'a', 'n'));
  drain(idle);
  idle.push(item(2, 'a', 'n'));
  idle.push(item(3, 'b', 'B'));
  assert.deepEqual(drain(idle), ['n', 'B'], 'no credit was earned while bulk had nothing');
});

test('removeWhere keeps the order of the rest and the turns of the callers left', () => {
  const q = new LaneQueue<Item>(0);
  for (const o of ['a', 'b', 'c']) for (let i = 0; i < 2; i++) q.push(item(2, o, `${o}${i}`));
  assert.deepEqual(q.removeWhere((x) => x.owner === 'b').map((x) => x.name), ['b0', 'b1']);
  assert.deepEqual(drain(q), ['a0', 'c0', 'a1', 'c1']);
});
