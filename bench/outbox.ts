// The outbox (--only=outbox): how fast mailroom takes a message durably
// (QUEUED, fsync on) against how fast it delivers one in SYNC mode, at 0
// and 20 ms from the relay; how fast it delivers out of the outbox; what a
// real MTA's durable acceptance costs on this machine (Postfix's smtpd and
// fsync'd queue, fed by its own smtp-source: --postfix=PORT of a running
// ../shared/tools/postfix-sink.sh-style Postfix); and its memory, idle and
// holding 100,000 queued messages, and its restart with them.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import type { LoadgenOptions } from './loadgen.js';
import { atDistance, measure, startNodeSink, startService, type ServiceProc, type Sink } from './procs.js';
import { ratio, type Ratio, type Row, type Target } from './report.js';
import { freePort, procRssMb } from './common.js';

export interface OutboxContext {
  readonly reps: number;
  readonly quick: boolean;
  readonly pki: BenchPki;
  /** the port of a Postfix sink to measure smtp-source against, if one runs */
  readonly postfixPort: number | undefined;
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

export interface OutboxOut {
  readonly ratios: Ratio[];
  readonly targets: Target[];
  readonly extra: [string, string][];
}

const W = 5;
const C = 100;
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const spread = (xs: readonly number[], digits = 0): string => xs.map((x) => x.toFixed(digits)).join(', ');

/** Polls the sink until it has taken `n` more than `from`; the seconds that took. */
async function drained(sink: Sink, from: number, n: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    if ((await sink.count()) - from >= n) return (performance.now() - started) / 1000;
    if (performance.now() - started > timeoutMs) throw new Error(`the outbox delivered ${(await sink.count()) - from} of ${n} in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** smtp-source into Postfix: `count` messages of 2 KB, C sessions; messages a second. */
function postfixAccepts(port: number, count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    execFile('smtp-source', ['-s', String(C), '-m', String(count), '-l', '2048', '-f', 'bench@example.com', '-t', 'sink@example.com', `127.0.0.1:${port}`], { timeout: 300_000 }, (err) =>
      err ? reject(err) : resolve(count / ((performance.now() - started) / 1000)),
    );
  });
}

export async function outboxScenarios(ctx: OutboxContext): Promise<OutboxOut> {
  const targets: Target[] = [];
  const ratios: Ratio[] = [];
  const extra: [string, string][] = [];
  const n = ctx.quick ? 2000 : 6000;
  const services: ServiceProc[] = [];
  const sinks: Sink[] = [];
  try {
    for (const rtt of [0, 20]) {
      const sink = await atDistance(await startNodeSink(ctx.pki), rtt);
      sinks.push(sink);
      const svc = await startService(sink, { workers: W, pki: ctx.pki });
      services.push(svc);
      const sync = ctx.row(`outbox-sync-${rtt}`, `SYNC SendMail C=${C}, RTT ${rtt} ms (delivered)`, true);
      const accept = ctx.row(`outbox-accept-${rtt}`, `QUEUED SendMail C=${C}, RTT ${rtt} ms (accepted, fsync'd)`, false);
      const few = rtt === 0 ? ctx.row('outbox-accept-c10', `QUEUED SendMail C=10, RTT 0 ms (accepted, fsync'd)`, false) : undefined;
      const deliveryRates: number[] = [];
      const syncN = rtt === 0 ? n : Math.round(n / 4);
      for (let rep = 0; rep < ctx.reps; rep++) {
        // Both parties with the lean client: grpc-js's would take a core of the two by itself (see h2-unary.ts).
        const load = (count: number, extraOpts: Partial<LoadgenOptions> = {}): LoadgenOptions => ({
          target: `127.0.0.1:${svc.port}`,
          method: 'SendMail',
          concurrency: C,
          warmup: 300,
          count,
          client: 'h2',
          ...extraOpts,
        });
        const runs: [Row, () => Promise<void>][] = [
          [sync, async () => void sync.reps.push(await measure('loadgen.js', load(syncN), { sink, serverPid: svc.pid }))],
          [
            accept,
            async () => {
              // Held until a moment after the accepting ends: acceptance is measured alone, then delivery out of the outbox.
              const sendAt = Date.now() + 60_000;
              const before = await sink.count();
              accept.reps.push(await measure('loadgen.js', load(n, { queued: true, sendAt }), { serverPid: svc.pid }));
              // The warm-up's messages go out with the measured ones: they are counted too.
              const held = n + 300;
              ctx.log(`outbox rep ${rep + 1}: RTT ${rtt} ms, waiting for send_at, then delivery of ${held}`);
              await new Promise((r) => setTimeout(r, Math.max(0, sendAt - Date.now())));
              const seconds = await drained(sink, before, held, 600_000);
              deliveryRates.push(held / seconds);
            },
          ],
        ];
        // At C=100 a closed loop's mean latency is 100 / rate whatever the store does; ten callers show what one durable accept costs.
        if (few !== undefined) runs.push([few, async () => void few.reps.push(await measure('loadgen.js', load(Math.round(n / 4), { queued: true, sendAt: Date.now() + 3_600_000, concurrency: 10 }), { serverPid: svc.pid }))]);
        for (const [row, run] of rep % 2 === 0 ? runs : [...runs].reverse()) {
          ctx.log(`outbox rep ${rep + 1}: ${row.label}`);
          await run();
        }
      }
      const syncRates = sync.reps.map((m) => (m.sinkAccepted ?? m.ok) / m.seconds);
      const acceptRates = accept.reps.map((m) => m.ok / m.seconds);
      const perRep = acceptRates.map((a, i) => a / (syncRates[i] as number));
      const want = rtt === 0 ? 2 : 10;
      targets.push({ name: `RTT ${rtt} ms: QUEUED accepts / SYNC deliveries, C=${C} (reps: ${spread(perRep, 2)})`, figure: `${median(perRep).toFixed(2)}×`, limit: `≥ ${want}×`, holds: median(perRep) >= want });
      const p99s = accept.reps.map((m) => m.latencyMs.p99);
      targets.push({ name: `RTT ${rtt} ms: QUEUED accept p99 at C=${C} (reps: ${spread(p99s, 1)} ms)`, figure: `${median(p99s).toFixed(1)} ms`, limit: '≤ 25 ms', holds: median(p99s) <= 25 });
      const deliveryRatio = deliveryRates.map((d, i) => d / (syncRates[i] as number));
      targets.push({
        name: `RTT ${rtt} ms: delivery out of the outbox / SYNC deliveries (reps: ${spread(deliveryRates)}/s against ${spread(syncRates)}/s)`,
        figure: `${median(deliveryRatio).toFixed(2)}×`,
        limit: '≥ 0.90×',
        holds: median(deliveryRatio) >= 0.9,
      });
      ratios.push(ratio(`RTT ${rtt} ms: QUEUED accepted / SYNC delivered`, accept, sync));
    }
    if (ctx.postfixPort !== undefined) {
      const rates: number[] = [];
      for (let rep = 0; rep < ctx.reps; rep++) rates.push(await postfixAccepts(ctx.postfixPort, ctx.quick ? 2000 : 5000));
      extra.push([`Postfix smtpd, fsync'd queue, smtp-source -s ${C} -l 2048 (reps)`, `${Math.round(median(rates))} messages/s (${spread(rates)})`]);
    } else {
      extra.push(['Postfix anchor', 'not measured: pass --postfix=PORT of a running Postfix sink']);
    }
    targets.push(...(await memory(ctx, extra)));
  } finally {
    for (const s of services) await s.stop();
    for (const s of sinks) await s.stop();
  }
  return { ratios, targets, extra };
}

/** Idle RSS; 100,000 queued messages of 2 KB held (the relay away); the restart with them. */
async function memory(ctx: OutboxContext, extra: [string, string][]): Promise<Target[]> {
  const targets: Target[] = [];
  const away = { kind: 'node-plain' as const, port: await freePort(), pid: 0, count: async () => 0, stop: async () => undefined };
  const outboxPath = join(mkdtempSync(join(tmpdir(), 'mailroom-bench-held-')), 'outbox.db');
  const relayAway = { EMAIL_HOST: '127.0.0.1', EMAIL_PORT: String(away.port), EMAIL_TLS: 'none', SMTP_BACKOFF_MAX_MS: '5000', OUTBOX_PATH: outboxPath };
  let svc = await startService(away as unknown as Sink, { workers: W, extraEnv: relayAway });
  try {
    await new Promise((r) => setTimeout(r, 3000));
    const idle = procRssMb(svc.pid);
    targets.push({ name: 'idle RSS, outbox open', figure: `${idle.toFixed(0)} MB`, limit: '≤ 100 MB', holds: idle <= 100 });
    const count = ctx.quick ? 20_000 : 100_000;
    ctx.log(`outbox: queueing ${count} messages of 2 KB with the relay away`);
    await measure('loadgen.js', { target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency: C, warmup: 0, count, queued: true, bodyBytes: 2048, client: 'h2' } satisfies LoadgenOptions, { serverPid: svc.pid });
    await new Promise((r) => setTimeout(r, 2000));
    const held = procRssMb(svc.pid);
    targets.push({ name: `RSS holding ${count} queued messages of 2 KB`, figure: `${held.toFixed(0)} MB`, limit: '≤ 250 MB', holds: held <= 250 });
    await svc.stop();
    const started = performance.now();
    svc = await startService(away as unknown as Sink, { workers: W, extraEnv: relayAway });
    const restarted = (performance.now() - started) / 1000;
    const after = procRssMb(svc.pid);
    extra.push([`RSS after the restart, ${count} queued`, `${after.toFixed(0)} MB`]);
    extra.push([`restart to serving with ${count} queued`, `${restarted.toFixed(2)} s`]);
    targets.push({ name: `restart to serving with ${count} queued messages`, figure: `${restarted.toFixed(2)} s`, limit: '≤ 5 s', holds: restarted <= 5 });
  } finally {
    await svc.stop();
  }
  return targets;
}
