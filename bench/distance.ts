// Round trips: the same senders against a TLS+AUTH sink 0, 20 and 50 ms
// away (a delay proxy holds every chunk half the round trip each way, the
// TLS handshake included). What decides throughput at a distance is how
// many round trips a message costs; pipelining across messages makes it one
// per connection, so W connections reach at most W/RTT messages a second,
// and CHUNKING (several whole messages in flight) passes that. Every
// repetition runs every party at every distance, interleaved.
import type { BenchPki } from './pki.js';
import type { LoadgenOptions } from './loadgen.js';
import type { NodemailerOptions } from './nodemailer-runner.js';
import { atDistance, measure, startNodeSink, startSeed, startService, type ServiceProc, type Sink } from './procs.js';
import { ratio, summarise, type Ratio, type Row, type Target } from './report.js';
import { throughputPlot } from './plot.js';
import { effectiveRttMs } from './rtt-probe.js';

export interface DistanceContext {
  readonly reps: number;
  readonly quick: boolean;
  readonly pki: BenchPki;
  readonly rtts: readonly number[];
  /** the Go service's binary (SEED_BIN): its row too */
  readonly seedBin: string | undefined;
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

const W = 5;
/** each measured phase lasts about this long at the rate expected */
const PHASE_SECONDS = 5;

interface Party {
  readonly id: string;
  readonly label: string;
  /** messages a second expected at this round trip, to size the run */
  readonly rate: (rttMs: number) => number;
  run(rttMs: number, count: number): Promise<Row['reps'][number]>;
}

export interface DistanceOut {
  readonly ratios: Ratio[];
  readonly targets: Target[];
  readonly extra: [string, string][];
  /** the plot of throughput against round trip, SVG */
  readonly svg: string;
}

const limit = (rttMs: number): number => (rttMs === 0 ? Infinity : (W * 1000) / rttMs);

export async function distanceScenarios(ctx: DistanceContext): Promise<DistanceOut> {
  const plain = new Map<number, Sink>();
  const chunking = new Map<number, Sink>();
  const services: ServiceProc[] = [];
  try {
    for (const rtt of ctx.rtts) {
      plain.set(rtt, await atDistance(await startNodeSink(ctx.pki), rtt));
      chunking.set(rtt, await atDistance(await startNodeSink(ctx.pki, 0, true), rtt));
    }
    const svc = new Map<string, ServiceProc>();
    const serviceFor = async (key: string, sink: Sink, env: Record<string, string> = {}): Promise<ServiceProc> => {
      let s = svc.get(key);
      if (s === undefined) {
        s = key.startsWith('seed') && ctx.seedBin !== undefined ? await startSeed(ctx.seedBin, sink, { workers: W, pki: ctx.pki }) : await startService(sink, { workers: W, pki: ctx.pki, extraEnv: env });
        svc.set(key, s);
        services.push(s);
      }
      return s;
    };
    const viaGrpc = (concurrency: number, sinkOf: Map<number, Sink>, env: Record<string, string>, key: string) => async (rttMs: number, count: number) => {
      const sink = sinkOf.get(rttMs) as Sink;
      const s = await serviceFor(`${key}@${rttMs}`, sink, env);
      const load: LoadgenOptions = { target: `127.0.0.1:${s.port}`, method: 'SendMail', concurrency, warmup: Math.max(100, Math.round(count / 5)), count };
      return measure('loadgen.js', load, { sink, serverPid: s.pid });
    };
    const nodemailer = (pool: boolean, concurrency: number) => async (rttMs: number, count: number) => {
      const sink = plain.get(rttMs) as Sink;
      const opts: NodemailerOptions = { port: sink.port, tls: true, ca: ctx.pki.ca, auth: true, pool, maxConnections: W, concurrency, warmup: Math.max(20, Math.round(count / 10)), count };
      return measure('nodemailer-runner.js', opts, { sink });
    };
    const pipelined = (rtt: number): number => Math.min(4000, limit(rtt));
    const parties: Party[] = [
      { id: 'mailroom-c15', label: 'mailroom W=5, C=15', rate: pipelined, run: viaGrpc(15, plain, {}, 'default') },
      { id: 'mailroom-c100', label: 'mailroom W=5, C=100', rate: pipelined, run: viaGrpc(100, plain, {}, 'default') },
      { id: 'mailroom-c15-norecycle', label: 'mailroom W=5, C=15, no recycling', rate: pipelined, run: viaGrpc(15, plain, { SMTP_MAX_MESSAGES_PER_CONNECTION: '1000000' }, 'norecycle') },
      { id: 'mailroom-c100-chunking', label: 'mailroom W=5, C=100, relay with CHUNKING', rate: (r) => Math.min(4000, 3 * limit(r)), run: viaGrpc(100, chunking, {}, 'chunking') },
      { id: 'nodemailer-pool', label: 'nodemailer pool of 5, C=15', rate: (r) => Math.min(3000, limit(r) / 2), run: nodemailer(true, 15) },
      ...(ctx.seedBin !== undefined
        ? [{ id: 'seed-c15', label: 'the Go service W=5, C=15', rate: (r: number) => (r === 0 ? 2000 : (W * 1000) / (4.5 * r)), run: viaGrpc(15, plain, {}, 'seed') }]
        : []),
      { id: 'nodemailer-per-message', label: 'nodemailer, a connection per message, C=15', rate: (r) => (r === 0 ? 500 : (15 * 1000) / (8 * r)), run: nodemailer(false, 15) },
    ];
    /** per round trip, the one measured through the proxy, once a repetition */
    const measured = new Map<number, number[]>(ctx.rtts.map((rtt) => [rtt, []]));
    const rows = new Map<string, Row>();
    for (const rtt of ctx.rtts) for (const p of parties) rows.set(`${p.id}@${rtt}`, ctx.row(`distance-${p.id}-${rtt}`, `${p.label}, RTT ${rtt} ms`, true));
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const rtt of ctx.rtts) {
        if (rtt > 0) measured.get(rtt)?.push(await effectiveRttMs((plain.get(rtt) as Sink).port, ctx.pki.ca));
        const order = rep % 2 === 0 ? parties : [...parties].reverse();
        for (const p of order) {
          const count = Math.max(200, Math.round(p.rate(rtt) * (ctx.quick ? 2 : PHASE_SECONDS)));
          ctx.log(`distance rep ${rep + 1}: RTT ${rtt} ms, ${p.label}, ${count} mails`);
          (rows.get(`${p.id}@${rtt}`) as Row).reps.push(await p.run(rtt, count));
        }
      }
    }
    return report(ctx, parties, rows, measured);
  } finally {
    for (const s of services) await s.stop();
    for (const sink of [...plain.values(), ...chunking.values()]) await sink.stop();
  }
}

function report(ctx: DistanceContext, parties: readonly Party[], rows: ReadonlyMap<string, Row>, measured: ReadonlyMap<number, number[]>): DistanceOut {
  const targets: Target[] = [];
  const ratios: Ratio[] = [];
  const extra: [string, string][] = [];
  const at = (id: string, rtt: number): Row => rows.get(`${id}@${rtt}`) as Row;
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const rates = (row: Row): number[] => row.reps.map((m) => m.ok / m.seconds);
  const spread = (xs: number[]): string => xs.map((x) => Math.round(x)).join(', ');
  for (const rtt of ctx.rtts) {
    const lim = limit(rtt);
    extra.push([`RTT ${rtt} ms: the pipelining limit W/RTT`, Number.isFinite(lim) ? `${Math.round(lim)} mails/s` : 'none (loopback)']);
    if (rtt > 0) {
      const probes = measured.get(rtt) ?? [];
      const paid = median(probes);
      extra.push([
        `RTT ${rtt} ms: round trip paid through the proxy (NOOP over TLS, median of 30, by repetition)`,
        `${probes.map((x) => x.toFixed(2)).join(', ')} ms: limit W/that ${Math.round((W * 1000) / paid)} mails/s`,
      ]);
      for (const id of ['mailroom-c15', 'mailroom-c100']) {
        const r = rates(at(id, rtt));
        targets.push({ name: `${id} at ${rtt} ms: throughput / (W/RTT) (reps: ${spread(r)}/s)`, figure: `${(median(r) / lim).toFixed(2)}×`, limit: '≥ 0.90×', holds: median(r) >= 0.9 * lim });
      }
      const p50s = at('mailroom-c15', rtt).reps.map((m) => m.latencyMs.p50);
      const queue = (15 / W) * rtt;
      targets.push({ name: `mailroom C=15 at ${rtt} ms: p50 / ((15 / W) × RTT = ${queue} ms) (reps: ${p50s.join(', ')} ms)`, figure: `${(median(p50s) / queue).toFixed(2)}×`, limit: '≤ 1.30×', holds: median(p50s) <= 1.3 * queue });
      const chunked = rates(at('mailroom-c100-chunking', rtt));
      if (rtt === 20) targets.push({ name: `CHUNKING at 20 ms: throughput / (W/RTT) (reps: ${spread(chunked)}/s)`, figure: `${(median(chunked) / lim).toFixed(2)}×`, limit: '≥ 2.00×', holds: median(chunked) >= 2 * lim });
    }
    if (rtt === 0 || rtt === 20) {
      const r = ratio(`recycling at ${rtt} ms: mailroom C=15 default / no recycling`, at('mailroom-c15', rtt), at('mailroom-c15-norecycle', rtt));
      ratios.push(r);
      targets.push({ name: `recycling at ${rtt} ms: throughput, default / no recycling (reps: ${r.perRep.throughput.join(', ')})`, figure: `${r.throughput.toFixed(2)}×`, limit: '≥ 0.95×', holds: r.throughput >= 0.95 });
    }
    ratios.push(ratio(`RTT ${rtt} ms: mailroom C=15 / nodemailer pool 5`, at('mailroom-c15', rtt), at('nodemailer-pool', rtt)));
  }
  const series = parties.map((p) => ({ label: p.label, points: ctx.rtts.map((rtt) => ({ x: rtt, y: summarise(at(p.id, rtt)).callsPerSec })) }));
  const svg = throughputPlot(series, ctx.rtts.filter((r) => r > 0).map((r) => ({ x: r, y: limit(r) })));
  return { ratios, targets, extra, svg };
}
