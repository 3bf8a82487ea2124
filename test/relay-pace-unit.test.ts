// The relay's pace as pure logic, on a clock the test moves: halved at a
// "slow down" (once a reaction window), a step back each recoverMs of clean
// replies, free again at twice where it was cut, the ceiling kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelayPace, saysSlowDown } from '../src/smtp/relay-pace.js';

test('which replies say slow down', () => {
  const r = (code: number, text: string, enhanced?: string) => ({ code, text, enhanced });
  assert.equal(saysSlowDown(r(421, 'Too many messages, slow down', '4.7.0')), true);
  assert.equal(saysSlowDown(r(451, 'Rate limited, try later', '4.7.1')), true);
  assert.equal(saysSlowDown(r(450, 'Requested action not taken: too many connections')), true);
  assert.equal(saysSlowDown(r(421, 'Service shutting down')), false);
  assert.equal(saysSlowDown(r(451, 'Greylisted, try again later', '4.7.1')), false);
  assert.equal(saysSlowDown(r(550, 'Too many recipients')), false, 'a permanent refusal is no pace');
  assert.equal(saysSlowDown(r(452, 'Insufficient storage; accurate rating')), false);
});

test('halved from the rate it sent at, once a window; climbs a step each recoverMs; free at twice the cut', () => {
  let now = 1_000_000;
  const pace = new RelayPace(0, 100, now);
  assert.equal(pace.limited, false);
  for (let i = 0; i < 80; i++) pace.delivered((now += 12));
  assert.equal(pace.slowDown(now), true);
  assert.equal(pace.throttled, true);
  const cut = pace.perSecond as number;
  assert.ok(cut >= 38 && cut <= 42, `cut to ${cut}/s from ~83`);
  assert.equal(pace.slowDown(now + 10), false, 'the replies to what was in flight say the same: one cut');
  now += 100;
  pace.delivered(now);
  assert.ok((pace.perSecond as number) > cut, 'a step back up');
  for (let i = 0; i < 200 && pace.throttled; i++) pace.delivered((now += 100));
  assert.equal(pace.throttled, false);
  assert.equal(pace.perSecond, undefined, 'free again');
  assert.equal(pace.limited, false);
});

test('the configured ceiling is never passed and is where a climb ends', () => {
  let now = 0;
  const pace = new RelayPace(30, 100, now);
  assert.equal(pace.perSecond, 30);
  for (let i = 0; i < 40; i++) pace.delivered((now += 30));
  pace.slowDown(now);
  assert.ok((pace.perSecond as number) <= 15);
  for (let i = 0; i < 200 && pace.throttled; i++) pace.delivered((now += 100));
  assert.equal(pace.perSecond, 30);
  assert.equal(pace.limited, true);
});
