// Shared pieces of the benchmark: the IPC protocol between the orchestrator
// and its child processes, latency statistics, and /proc readings.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** What a load process reports after its measured phase. */
export interface LoadResult {
  readonly ok: number;
  readonly errors: number;
  /** first few error messages, for the report */
  readonly errorSamples: string[];
  readonly seconds: number;
  readonly latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** the load process's own CPU for the measured phase, µs */
  readonly cpuMicros: number;
}

/** Messages a load process sends its parent. */
export type ChildMessage = { type: 'ready' } | { type: 'warm' } | { type: 'done'; result: LoadResult } | { type: 'failed'; error: string };
/** Messages a parent sends a load process. */
export type ParentMessage = { type: 'go' } | { type: 'stop' };

export function send(msg: ChildMessage): void {
  process.send?.(msg);
}

/** Resolves with the parent's next message of the given type. */
export function nextParentMessage(type: ParentMessage['type']): Promise<void> {
  return new Promise((resolve) => {
    const on = (m: ParentMessage): void => {
      if (m.type !== type) return;
      process.off('message', on);
      resolve();
    };
    process.on('message', on);
  });
}

export function percentile(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export function latencySummary(samples: Float64Array): LoadResult['latencyMs'] {
  const sorted = Float64Array.from(samples).sort();
  const round = (x: number): number => Math.round(x * 100) / 100;
  return {
    p50: round(percentile(sorted, 0.5)),
    p90: round(percentile(sorted, 0.9)),
    p99: round(percentile(sorted, 0.99)),
    max: round(sorted.length > 0 ? (sorted[sorted.length - 1] as number) : 0),
  };
}

/**
 * Runs `call` N times with C in flight after W warm-up calls; between the two
 * phases it tells the parent 'warm' and waits for 'go', so the parent can read
 * counters (sink count, service CPU) at the exact edges of the measured phase.
 */
export async function drive(opts: { concurrency: number; warmup: number; count: number }, call: (i: number) => Promise<void>): Promise<LoadResult> {
  const { concurrency, warmup, count } = opts;
  let next = 0;
  // Call numbers run on from the warm-up into the measured phase, so a
  // scenario that needs distinct requests (SendCode addresses) gets them.
  const runPhase = async (total: number, lat: Float64Array | undefined, errors: string[], base: number): Promise<number> => {
    next = 0;
    let ok = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) {
        const t0 = performance.now();
        try {
          await call(base + i);
          ok++;
        } catch (err) {
          errors.push((err as Error).message);
        }
        if (lat !== undefined) lat[i] = performance.now() - t0;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
    return ok;
  };
  await runPhase(warmup, undefined, [], 0);
  send({ type: 'warm' });
  await nextParentMessage('go');
  const lat = new Float64Array(count);
  const errors: string[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const ok = await runPhase(count, lat, errors, warmup);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    ok,
    errors: errors.length,
    errorSamples: [...new Set(errors)].slice(0, 3),
    seconds,
    latencyMs: latencySummary(lat),
    cpuMicros: cpu.user + cpu.system,
  };
}

/** Runs a load child's main: reports 'done' or 'failed' to the parent, then exits. */
export function runChild(main: () => Promise<LoadResult>): void {
  main().then(
    (result) => {
      send({ type: 'done', result });
      setTimeout(() => process.exit(0), 50);
    },
    (err: unknown) => {
      send({ type: 'failed', error: (err as Error).stack ?? String(err) });
      setTimeout(() => process.exit(1), 50);
    },
  );
}

const CLK_TCK = 100;

/** CPU time (user + system) of a process in µs, from /proc/<pid>/stat. */
export function procCpuMicros(pid: number): number {
  const { user, system } = procCpuSplit(pid);
  return user + system;
}

/** User and system CPU time of a process in µs, from /proc/<pid>/stat. */
export function procCpuSplit(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name, which is in parentheses and may hold spaces
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: (Number(fields[11]) * 1e6) / CLK_TCK, system: (Number(fields[12]) * 1e6) / CLK_TCK };
}

/** Resident set size of a process in MB, from /proc/<pid>/status. */
export function procRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The message every sender in the bench sends: same recipient, subject and body. */
export const BENCH_MAIL = {
  from: 'bench@example.com',
  to: 'rcpt@example.com',
  subject: 'Your receipt #12345',
  text: 'Hello,\r\n\r\nthank you for your order. This is the plain-text receipt body of a typical transactional\r\nmessage, a few hundred bytes long, sent by the mailroom benchmark.\r\n\r\nRegards,\r\nThe shop\r\n',
} as const;

/** A PDF-looking file of `bytes` bytes, the same every time: a header and seeded noise (it does not compress, as a real PDF's streams do not). */
export function benchPdf(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  out.write('%PDF-1.7\n');
  let x = 0x9e3779b9;
  for (let i = 9; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export const BENCH_AUTH = { user: 'bench@example.com', pass: 'bench-password-123' } as const;
