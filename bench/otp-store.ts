// The OTP store at scale, in its own process (run with --expose-gc): heap
// above idle with 1,000,000 live codes, and the event-loop stall while the
// OTP actor's sweep removes 10,000 expired codes from among them. It fills the
// service's own store through its interface, then lets the real OTP actor
// sweep it (a 'sweep' event, as its timer sends) under a synthetic clock.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createActor } from 'xstate';
import { otpMachine } from '../src/actors/otp.js';
import { createLogger } from '../src/log.js';
import { CodeHasher, generateCode } from '../src/otp/code.js';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';

export type OtpStoreResult =
  | { available: false; reason: string }
  | {
      available: true;
      liveCodes: number;
      idleHeapMb: number;
      /** heapUsed + arrayBuffers above idle, after a full GC */
      aboveIdleMb: number;
      bytesPerCode: number;
      /** the slowest single send (reserve + commit) while filling: growth and GC pauses */
      slowestFillStepMs: number;
      sweep: { removed: number; ms: number; loopDelayMaxMs: number; loopDelayP99Ms: number };
    };

const LIVE = Number(process.argv[2] ?? 1_000_000);
const EXPIRED = Number(process.argv[3] ?? 10_000);

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return (m.heapUsed + m.arrayBuffers) / 1_048_576;
}

async function main(): Promise<OtpStoreResult> {
  const lifespanMs = 120_000;
  const store = new InMemoryOtpStore({ lifespanMs, maxAttempts: 5, resendCooldownMs: 30_000, maxSendsPerHour: 10 });
  const hasher = new CodeHasher('bench-secret-bench-secret-bench-secret!');
  const idle = heapMb();
  const t0 = Date.now();
  // What SendCode leaves behind for an address: a reserved send, then a live code.
  let slowest = 0;
  const issue = (key: string, now: number): void => {
    const hash = hasher.hash(key, generateCode(6));
    const started = performance.now();
    store.reserve(key, now);
    store.commit(key, hash, now);
    slowest = Math.max(slowest, performance.now() - started);
  };
  for (let i = 0; i < EXPIRED; i++) issue(`old${i}@example.com`, t0);
  const t1 = t0 + 60_000;
  for (let i = 0; i < LIVE; i++) issue(`user${i}@example.com`, t1);
  const full = heapMb();

  let clock = t1;
  const actor = createActor(otpMachine, {
    input: {
      options: {
        length: 6,
        lifespanMs,
        resendCooldownMs: 30_000,
        cleanupMs: 3_600_000, // its own timer stays out of the way; the bench sends the sweep
        returnCode: false,
        templates: { subject: 'Your code: {{code}}', text: '{{code}}', html: '' },
      },
      store,
      hasher,
      mailer: {
        send: () => {
          throw new Error('the bench sends no code mail');
        },
      },
      log: createLogger({ level: 'error', format: 'json', silent: true }),
      now: () => clock,
    },
  });
  actor.start();
  const h = monitorEventLoopDelay({ resolution: 1 });
  await sleep(20);
  h.enable();
  await sleep(50);
  // The old codes have expired, the million have not.
  clock = t0 + lifespanMs + 1;
  const before = store.size;
  const started = performance.now();
  actor.send({ type: 'sweep' });
  // However the actor spreads the work, it is done when the expired are gone.
  while (store.size > LIVE) await new Promise((r) => setImmediate(r));
  const ms = performance.now() - started;
  const result = { removed: before - store.size };
  await sleep(50);
  h.disable();
  actor.stop();
  const total = EXPIRED + LIVE;
  return {
    available: true,
    liveCodes: total,
    idleHeapMb: Math.round(idle * 10) / 10,
    aboveIdleMb: Math.round((full - idle) * 10) / 10,
    bytesPerCode: Math.round(((full - idle) * 1_048_576) / total),
    slowestFillStepMs: Math.round(slowest * 10) / 10,
    sweep: {
      removed: result.removed,
      ms: Math.round(ms * 100) / 100,
      loopDelayMaxMs: Math.round((h.max / 1e6) * 100) / 100,
      loopDelayP99Ms: Math.round((h.percentile(99) / 1e6) * 100) / 100,
    },
  };
}

main().then(
  (r) => {
    process.send?.({ type: 'otp-store', result: r });
    setTimeout(() => process.exit(0), 50);
  },
  (err: unknown) => {
    process.send?.({ type: 'otp-store', result: { available: false, reason: (err as Error).stack ?? String(err) } });
    setTimeout(() => process.exit(1), 50);
  },
);
