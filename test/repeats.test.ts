// The log's limit on repeats, as pure logic on a clock the test moves: a
// burst is written, then one a second, and what was held back is summed up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RepeatLimiter } from '../src/lib/repeats.js';

test('a line repeated 10,000 times in 10 s is written about once a second, and the rest is summed up, not lost', async () => {
  let now = 0;
  const summaries: { held: number; seconds: number; message: string }[] = [];
  const limiter = new RepeatLimiter((s) => summaries.push(s), () => now, 50);
  let written = 0;
  for (let i = 0; i < 10_000; i++) {
    now = i; // one a millisecond
    if (limiter.allow({ level: 'error', message: 'outbox: could not claim messages', code: 'ESTORE' })) written++;
  }
  assert.ok(written >= 3 && written <= 3 + 10, `${written} lines written`);
  // Another line is not held back by this one's storm.
  assert.ok(limiter.allow({ level: 'error', message: 'something else' }));
  assert.ok(limiter.allow({ level: 'error', message: 'outbox: could not claim messages', code: 'EQUEUEFULL' }), 'another code is another line');
  // The summary comes from a timer (ten seconds on in the service; 50 ms here).
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(summaries.length, 1);
  assert.equal(summaries[0]?.held, 10_000 - written);
  assert.equal(summaries[0]?.message, 'outbox: could not claim messages');
});

test('a state that flaps is still told each time: three in a row are written', () => {
  const limiter = new RepeatLimiter(() => undefined, () => 0);
  for (let i = 0; i < 3; i++) assert.ok(limiter.allow({ level: 'info', message: 'pool up' }));
  assert.ok(!limiter.allow({ level: 'info', message: 'pool up' }));
});
