// The pipeline's depth at a distance (--only=depth --postfix=PORT): a real
// Postfix smtpd (PIPELINING, CHUNKING, an fsync'd queue; see
// ../shared/tools/postfix-sink.sh) behind a delay proxy at 0, 20, 50 and
// 100 ms; mailroom with its default (the depth follows the round trip)
// against fixed depths of 4, 8 and 16; W=5, C=100, 2,000 mails a run,
// interleaved, every mail counted in Postfix's own log.
import type { LoadgenOptions } from './loadgen.js';
import { atDistance, measure, startService, type Measured, type ServiceProc, type Sink } from './procs.js';
import { type Row, type Target } from './report.js';
import { throughputPlot } from './plot.js';
import { postfix, postfixCount } from './postfix.js';

export interface DepthContext {
  readonly reps: number;
  readonly quick: boolean;
  readonly postfixPort: number;
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

const W = 5;
const C = 100;
const RTTS = [0, 20, 50, 100];
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const spread = (xs: readonly number[]): string => xs.map((x) => Math.round(x)).join(', ');

export async function depthScenarios(ctx: DepthContext): Promise<{ targets: Target[]; extra: [string, string][]; svg: string }> {
  const parties: { id: string; label: string; env: Record<string, string> }[] = [
    { id: 'adaptive', label: 'mailroom default (depth follows the round trip, 4 to 32)', env: {} },
    { id: 'fixed4', label: 'fixed depth 4 (the default before)', env: { SMTP_PIPELINE_DEPTH: '4', SMTP_PIPELINE_DEPTH_MAX: '4' } },
    { id: 'fixed8', label: 'fixed depth 8', env: { SMTP_PIPELINE_DEPTH: '8', SMTP_PIPELINE_DEPTH_MAX: '8' } },
    { id: 'fixed16', label: 'fixed depth 16', env: { SMTP_PIPELINE_DEPTH: '16', SMTP_PIPELINE_DEPTH_MAX: '16' } },
  ];
  const count = ctx.quick ? 1000 : 2000;
  const sinks: Sink[] = [];
  const services: ServiceProc[] = [];
  const rows = new Map<string, Row>();
  let uncounted = 0;
  try {
    for (const rtt of RTTS) {
      const sink = await atDistance(postfix(ctx.postfixPort), rtt);
      sinks.push(sink);
      for (const p of parties) {
        services.push(await startService(sink, { workers: W, extraEnv: { ...p.env, SMTP_DATA_TIMEOUT_MS: '60000' } }));
        rows.set(`${p.id}@${rtt}`, ctx.row(`depth-${p.id}-${rtt}`, `${p.label}, Postfix at ${rtt} ms, C=${C}`, true));
      }
    }
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const [r, rtt] of RTTS.entries()) {
        const order = rep % 2 === 0 ? parties : [...parties].reverse();
        for (const p of order) {
          const svc = services[r * parties.length + parties.indexOf(p)] as ServiceProc;
          ctx.log(`depth rep ${rep + 1}: Postfix at ${rtt} ms, ${p.label}`);
          const before = await postfixCount();
          const load: LoadgenOptions = { target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency: C, warmup: 200, count };
          const m: Measured = await measure('loadgen.js', load, { serverPid: svc.pid });
          // Postfix logs a delivery once its queue manager has moved it on: give it a moment, then every mail must be there.
          const want = before + m.ok + load.warmup;
          for (let i = 0; i < 100 && (await postfixCount()) < want; i++) await new Promise((res) => setTimeout(res, 100));
          const logged = await postfixCount();
          uncounted += Math.max(0, want - logged);
          (rows.get(`${p.id}@${rtt}`) as Row).reps.push({ ...m, sinkAccepted: logged - before - load.warmup });
        }
      }
    }
  } finally {
    for (const s of services) await s.stop();
    for (const s of sinks) await s.stop();
  }
  const rate = (id: string, rtt: number): number[] => (rows.get(`${id}@${rtt}`) as Row).reps.map((m) => m.ok / m.seconds);
  const targets: Target[] = [];
  const extra: [string, string][] = [];
  const home = rate('adaptive', 0);
  for (const rtt of [50, 100]) {
    const per = rate('adaptive', rtt).map((x, i) => x / (home[i] as number));
    targets.push({ name: `default depth at ${rtt} ms / at 0 ms, Postfix, W=${W}, C=${C} (reps: ${per.map((x) => x.toFixed(2)).join(', ')})`, figure: `${median(per).toFixed(2)}×`, limit: '≥ 0.80×', holds: median(per) >= 0.8 });
  }
  const atHome = rate('adaptive', 0).map((x, i) => x / (rate('fixed4', 0)[i] as number));
  targets.push({ name: `default depth at 0 ms / fixed depth 4 at 0 ms (no loss at no distance) (reps: ${atHome.map((x) => x.toFixed(2)).join(', ')})`, figure: `${median(atHome).toFixed(2)}×`, limit: '≥ 0.95×', holds: median(atHome) >= 0.95 });
  for (const p of parties) extra.push([`${p.label}: mails/s at ${RTTS.join(', ')} ms (medians; reps)`, RTTS.map((rtt) => `${Math.round(median(rate(p.id, rtt)))} (${spread(rate(p.id, rtt))})`).join(' · ')]);
  extra.push(['every mail counted in Postfix\'s log', uncounted === 0 ? 'yes' : `NO: ${uncounted} missing`]);
  const series = parties.map((p) => ({ label: p.label, points: RTTS.map((rtt) => ({ x: rtt, y: median(rate(p.id, rtt)) })) }));
  const svg = throughputPlot(series, RTTS.filter((r) => r > 0).map((r) => ({ x: r, y: (W * 1000) / r })));
  return { targets, extra, svg };
}
