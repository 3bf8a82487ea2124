// Loaded into the service for the memory-budget scenario only
// (node --import dist/bench/loop-probe.js): the event loop's longest stall
// since the last SIGUSR2, written to MAILROOM_LOOP_PROBE every 200 ms, with
// what tells its cause apart: the process's CPU time during that stall (as
// long as the stall: the loop was busy; much shorter: the process was not
// scheduled, the machine was), and the longest GC pause.
import { writeFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';

export interface LoopProbe {
  readonly maxMs: number;
  readonly p99Ms: number;
  /** CPU the process spent (all threads) while the longest gap between 10 ms ticks lasted */
  readonly cpuInLongestMs: number;
  readonly longestGapMs: number;
  readonly maxGcMs: number;
}

const file = process.env.MAILROOM_LOOP_PROBE;
if (file !== undefined) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let longestGap = 0;
  let cpuInLongest = 0;
  let maxGc = 0;
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const gap = now - last;
    if (gap > longestGap) {
      longestGap = gap;
      cpuInLongest = (cpu.user - lastCpu.user + cpu.system - lastCpu.system) / 1000;
    }
    last = now;
    lastCpu = cpu;
  }, 10).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) maxGc = Math.max(maxGc, e.duration);
  }).observe({ entryTypes: ['gc'] });
  process.on('SIGUSR2', () => {
    histogram.reset();
    longestGap = 0;
    cpuInLongest = 0;
    maxGc = 0;
  });
  setInterval(() => {
    const probe: LoopProbe = { maxMs: histogram.max / 1e6, p99Ms: histogram.percentile(99) / 1e6, cpuInLongestMs: cpuInLongest, longestGapMs: longestGap, maxGcMs: maxGc };
    writeFileSync(file, JSON.stringify(probe));
  }, 200).unref();
}
