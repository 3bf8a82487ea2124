// The per-caller bucket tables: bounded, forgetting what has refilled, and
// failing open (a fresh bucket) rather than shut when full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RateCap } from '../src/lib/rate-cap.js';
import { addressKey } from '../src/rpc/peer.js';

test('a cap per key: one key spent, another untouched; refills with time', () => {
  let now = 0;
  const cap = new RateCap(3, 1000, 'things', () => now);
  for (let i = 0; i < 3; i++) cap.take('a');
  assert.throws(() => cap.take('a'), /too many things/);
  cap.take('b');
  now += 400; // 1.2 tokens back
  cap.take('a');
  assert.throws(() => cap.take('a'));
});

test('idle buckets are forgotten, and the table never outgrows its bound', () => {
  let now = 0;
  const cap = new RateCap(10, 1000, 'things', () => now, 1000);
  for (let i = 0; i < 50_000; i++) {
    cap.take(`k${i}`);
    assert.ok(cap.size <= 1000);
  }
  now += 1000; // every bucket has refilled
  cap.take('new');
  assert.equal(cap.size, 1, 'refilled buckets are the same as none');
});

test('a full table of busy buckets lets a new key in (fails open), never refuses it', () => {
  const now = 0;
  const cap = new RateCap(2, 60_000, 'things', () => now, 100);
  for (let i = 0; i < 100; i++) {
    cap.take(`busy${i}`);
    cap.take(`busy${i}`);
  }
  assert.doesNotThrow(() => cap.take('newcomer'));
  assert.equal(cap.size, 100);
});

test('0 is no cap; IPv6 callers are keyed by their /64, IPv4 as they are', () => {
  const cap = new RateCap(0, 1000, 'things');
  for (let i = 0; i < 1000; i++) cap.take('a');
  assert.equal(cap.size, 0);
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.equal(addressKey('::ffff:10.0.0.7'), '10.0.0.7');
  assert.equal(addressKey('10.0.0.7'), '10.0.0.7');
});
