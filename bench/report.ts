// Rows of repeated measurements, their medians, ratios pair by pair, targets,
// and the table printed on stdout.
import type { Measured } from './procs.js';
import { median } from './common.js';

export interface Row {
  readonly id: string;
  readonly label: string;
  /** SendMail-like rows count only what the sink accepted */
  readonly mail: boolean;
  readonly reps: Measured[];
  /** extra per-row figures (idle RSS and the like) */
  readonly notes?: Record<string, number | string>;
}

/** Calls per second that count: for mail, only messages the sink accepted. */
export function rate(m: Measured, mail: boolean): number {
  const good = mail && m.sinkAccepted !== undefined ? Math.min(m.ok, m.sinkAccepted) : m.ok;
  return good / m.seconds;
}

export interface Summary {
  readonly id: string;
  readonly label: string;
  readonly reps: number;
  readonly callsPerSec: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly errors: number;
  readonly calls: number;
  readonly sinkAccepted: number | undefined;
  /** service CPU per call (per delivered mail for SendMail), µs; for nodemailer its own process's CPU */
  readonly cpuPerCallUs: number;
  /** the kernel's share of the service's CPU (system time / total) */
  readonly cpuSystemShare: number | undefined;
  readonly serverRssMb: number | undefined;
  /** the sink's CPU per accepted mail, µs: what the sender's way of talking SMTP costs the relay */
  readonly sinkCpuPerMailUs: number | undefined;
  readonly errorSamples: string[];
}

/** The server's CPU (the sender's own, without a server) per call, per mail the sink counted for a mail row. */
export function cpuPerCall(m: Measured, mail: boolean): number {
  const cpu = m.serverCpuMicros ?? m.cpuMicros;
  const n = mail && m.sinkAccepted !== undefined ? m.sinkAccepted : m.ok;
  return n > 0 ? cpu / n : NaN;
}

export function summarise(row: Row): Summary {
  const r = row.reps;
  const cpuPer = (m: Measured): number => cpuPerCall(m, row.mail);
  const sinkCpu = r
    .filter((m) => m.sinkCpuMicros !== undefined && m.sinkAccepted !== undefined && m.sinkAccepted > 0)
    .map((m) => (m.sinkCpuMicros as number) / (m.sinkAccepted as number));
  const rss = r.map((m) => m.serverRssMb).filter((x): x is number => x !== undefined);
  const sinks = r.map((m) => m.sinkAccepted).filter((x): x is number => x !== undefined);
  return {
    id: row.id,
    label: row.label,
    reps: r.length,
    callsPerSec: Math.round(median(r.map((m) => rate(m, row.mail)))),
    p50: median(r.map((m) => m.latencyMs.p50)),
    p90: median(r.map((m) => m.latencyMs.p90)),
    p99: median(r.map((m) => m.latencyMs.p99)),
    max: median(r.map((m) => m.latencyMs.max)),
    errors: r.reduce((a, m) => a + m.errors, 0),
    calls: r.reduce((a, m) => a + m.ok + m.errors, 0),
    sinkAccepted: sinks.length > 0 ? sinks.reduce((a, b) => a + b, 0) : undefined,
    cpuPerCallUs: Math.round(median(r.map(cpuPer))),
    cpuSystemShare: r.every((m) => m.serverSysMicros !== undefined && m.serverCpuMicros)
      ? Math.round(median(r.map((m) => (m.serverSysMicros as number) / (m.serverCpuMicros as number))) * 100) / 100
      : undefined,
    serverRssMb: rss.length > 0 ? Math.round(Math.max(...rss)) : undefined,
    sinkCpuPerMailUs: sinkCpu.length > 0 ? Math.round(median(sinkCpu)) : undefined,
    errorSamples: [...new Set(r.flatMap((m) => m.errorSamples))].slice(0, 3),
  };
}

export interface Ratio {
  readonly name: string;
  readonly a: string;
  readonly b: string;
  /** median over repetitions of a/b computed within each repetition */
  readonly throughput: number;
  readonly p99: number;
  /** the per-repetition ratios the medians come from */
  readonly perRep: { throughput: number[]; p99: number[] };
}

export function ratio(name: string, a: Row, b: Row): Ratio {
  const n = Math.min(a.reps.length, b.reps.length);
  const tp: number[] = [];
  const p99: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a.reps[i] as Measured;
    const y = b.reps[i] as Measured;
    tp.push(rate(x, a.mail) / rate(y, b.mail));
    p99.push(x.latencyMs.p99 / y.latencyMs.p99);
  }
  const r2 = (v: number): number => Math.round(v * 100) / 100;
  return { name, a: a.id, b: b.id, throughput: r2(median(tp)), p99: r2(median(p99)), perRep: { throughput: tp.map(r2), p99: p99.map(r2) } };
}

export interface Target {
  readonly name: string;
  readonly figure: string;
  readonly limit: string;
  readonly holds: boolean;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** widest a table is printed: a wider one is split into tables of fewer columns, each with the first */
const MAX_WIDTH = 160;

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  // Columns after the first, in groups that fit MAX_WIDTH beside it.
  const groups: number[][] = [[]];
  let used = (widths[0] as number) + 4;
  for (let i = 1; i < headers.length; i++) {
    const w = (widths[i] as number) + 3;
    const group = groups[groups.length - 1] as number[];
    if (group.length > 0 && used + w > MAX_WIDTH) {
      groups.push([i]);
      used = (widths[0] as number) + 4 + w;
    } else {
      group.push(i);
      used += w;
    }
  }
  return groups
    .map((group) => {
      const cols = [0, ...group];
      const line = (cells: string[]): string => `| ${cols.map((i, k) => pad(cells[i] ?? '', widths[i] as number, k > 0)).join(' | ')} |`;
      const sep = `|${cols.map((i, k) => (k > 0 ? `${'-'.repeat((widths[i] as number) + 1)}:` : '-'.repeat((widths[i] as number) + 2))).join('|')}|`;
      return [line(headers), sep, ...rows.map(line)].join('\n');
    })
    .join('\n\n');
}

export function render(summaries: Summary[], ratios: Ratio[], targets: Target[], extra: [string, string][]): string {
  const f = (x: number | undefined, d = 1): string => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(d));
  const scen = table(
    ['scenario', 'calls/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'errors', 'sink count', 'CPU µs/call', 'sys %', 'RSS MB', 'sink µs/mail'],
    summaries.map((s) => [
      s.label,
      String(s.callsPerSec),
      f(s.p50, 2),
      f(s.p90, 2),
      f(s.p99, 2),
      f(s.max, 1),
      `${s.errors}/${s.calls}`,
      s.sinkAccepted === undefined ? '–' : String(s.sinkAccepted),
      f(s.cpuPerCallUs, 0),
      s.cpuSystemShare === undefined ? '–' : String(Math.round(s.cpuSystemShare * 100)),
      s.serverRssMb === undefined ? '–' : String(s.serverRssMb),
      f(s.sinkCpuPerMailUs, 0),
    ]),
  );
  const rat = table(
    ['pair (same run, per repetition)', 'throughput ×', 'p99 ×', 'throughput × by repetition'],
    ratios.map((r) => [r.name, r.throughput.toFixed(2), r.p99.toFixed(2), r.perRep.throughput.map((x) => x.toFixed(2)).join(' ')]),
  );
  const tgt = table(
    ['target', 'figure', 'limit', 'holds'],
    targets.map((t) => [t.name, t.figure, t.limit, t.holds ? 'yes' : 'NO']),
  );
  const ext = extra.length > 0 ? `\n\n${table(['measure', 'value'], extra.map(([k, v]) => [k, v]))}` : '';
  return `${scen}\n\n${rat}${ext}\n\n${tgt}`;
}
