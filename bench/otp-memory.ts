// Quick measurement for issue 4: process memory with 1,000,000 live codes in
// the in-memory store, each with its send record, as SendCode leaves them.
//   npm run build && node --expose-gc dist/bench/otp-memory.js [codes=1000000]
import { CodeHasher } from '../src/otp/code.js';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';

const COUNT = Number(process.argv[2] ?? 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;

function snapshot(): { rss: number; heapUsed: number; external: number } {
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external + m.arrayBuffers };
}

const mb = (bytes: number): string => `${(bytes / 1_048_576).toFixed(1)} MB`;

const store = new InMemoryOtpStore({ lifespanMs: 120_000, maxAttempts: 5, resendCooldownMs: 30_000, maxSendsPerHour: 10 });
const hasher = new CodeHasher(undefined);
const before = snapshot();
const started = process.hrtime.bigint();
const now = Date.now();
for (let i = 0; i < COUNT; i++) {
  const key = `user${i}@example.com`;
  store.reserve(key, now);
  store.commit(key, hasher.hash(key, '123456'), now);
}
const insertMs = Number(process.hrtime.bigint() - started) / 1e6;
const after = snapshot();
const sweepStarted = process.hrtime.bigint();
const swept = store.sweep(now + 60_000);
const sweepMicros = Number(process.hrtime.bigint() - sweepStarted) / 1e3;

process.stdout.write(`${store.size} live codes${gc === undefined ? ' (run with --expose-gc for settled figures)' : ''}\n`);
process.stdout.write(`rss      ${mb(before.rss)} → ${mb(after.rss)}  (+${mb(after.rss - before.rss)}, ${Math.round((after.rss - before.rss) / COUNT)} B/code)\n`);
process.stdout.write(`heapUsed ${mb(before.heapUsed)} → ${mb(after.heapUsed)}  (+${mb(after.heapUsed - before.heapUsed)}, ${Math.round((after.heapUsed - before.heapUsed) / COUNT)} B/code)\n`);
process.stdout.write(`external ${mb(before.external)} → ${mb(after.external)}\n`);
process.stdout.write(`insert ${Math.round(insertMs)} ms (${((insertMs * 1000) / COUNT).toFixed(2)} µs/code); a sweep with nothing expired: ${swept.examined} examined, ${sweepMicros.toFixed(0)} µs\n`);
