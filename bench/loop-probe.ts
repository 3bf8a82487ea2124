// Loaded into the service for the memory-budget scenario only
// (node --import dist/bench/loop-probe.js): the event loop's longest stall
// since the last SIGUSR2, written to MAILROOM_LOOP_PROBE every 200 ms.
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.MAILROOM_LOOP_PROBE;
if (file !== undefined) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  process.on('SIGUSR2', () => histogram.reset());
  setInterval(() => writeFileSync(file, JSON.stringify({ maxMs: histogram.max / 1e6, p99Ms: histogram.percentile(99) / 1e6 })), 200).unref();
}
