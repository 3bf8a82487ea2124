// The per-session message cap: never above the configured maximum, spread
// over its top quarter so that a pool's connections do not re-dial together.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionCap } from '../src/smtp/session-cap.js';

test('a session carries between three quarters of the maximum and all of it', () => {
  assert.equal(sessionCap(100, () => 0), 100);
  assert.equal(sessionCap(100, () => 0.999999), 75);
  for (let i = 0; i < 1000; i++) {
    const cap = sessionCap(100);
    assert.ok(cap >= 75 && cap <= 100, String(cap));
  }
  assert.ok(new Set(Array.from({ length: 200 }, () => sessionCap(100))).size > 10, 'the caps are spread out');
});

test('small caps stay exact, and a cap never drops to zero', () => {
  for (const max of [1, 2, 3]) assert.equal(sessionCap(max, () => 0.999999), max);
  assert.equal(sessionCap(4, () => 0.999999), 3);
  for (let max = 1; max <= 50; max++) assert.ok(sessionCap(max, () => 0.999999) >= 1);
});
