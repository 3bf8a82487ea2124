// Mail that carries more than text (--only=parts): a 1 MB PDF attachment at
// C=15, mailroom against nodemailer's pool sending the same message straight
// to the same sink (what an app would do itself), throughput and CPU per
// mail; and DKIM signing on against off for a 2 KB message (RSA 2048, the
// key most senders publish), same sink, interleaved.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchPki } from './pki.js';
import type { LoadgenOptions } from './loadgen.js';
import type { NodemailerOptions } from './nodemailer-runner.js';
import { measure, startNodeSink, startService, type Measured, type ServiceProc, type Sink } from './procs.js';
import { ratio, type Ratio, type Row, type Target } from './report.js';
import { BENCH_MAIL } from './common.js';

export interface PartsContext {
  readonly reps: number;
  readonly quick: boolean;
  readonly pki: BenchPki;
  /** --profile: the services write CPU profiles here */
  readonly profileDir: string | undefined;
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

const C = 15;
const PDF_BYTES = 1_000_000;
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const spread = (xs: readonly number[], digits = 2): string => xs.map((x) => x.toFixed(digits)).join(', ');
const rate = (m: Measured): number => (m.sinkAccepted ?? m.ok) / m.seconds;

export async function partsScenarios(ctx: PartsContext): Promise<{ ratios: Ratio[]; targets: Target[]; extra: [string, string][] }> {
  const ratios: Ratio[] = [];
  const targets: Target[] = [];
  const extra: [string, string][] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-bench-dkim-'));
  const keyFile = join(dir, 'dkim.pem');
  writeFileSync(keyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const edFile = join(dir, 'dkim-ed25519.pem');
  writeFileSync(edFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const dkimEnv = { DKIM_DOMAIN: 'example.com', DKIM_SELECTOR: 'bench', DKIM_PRIVATE_KEY_FILE: keyFile };
  const sinks: Sink[] = [];
  const services: ServiceProc[] = [];
  try {
    const sink = await startNodeSink(ctx.pki);
    sinks.push(sink);
    const profileDir = ctx.profileDir;
    const plain = await startService(sink, { workers: 5, pki: ctx.pki, ...(profileDir !== undefined ? { profileDir } : {}) });
    const signing = await startService(sink, { workers: 5, pki: ctx.pki, extraEnv: dkimEnv, ...(profileDir !== undefined ? { profileDir } : {}) });
    const signingEd = await startService(sink, { workers: 5, pki: ctx.pki, extraEnv: { ...dkimEnv, DKIM_PRIVATE_KEY_FILE: edFile } });
    services.push(plain, signing, signingEd);
    const n = ctx.quick ? 150 : 400;
    const pdfRow = ctx.row('parts-pdf-mailroom', `SendMail with a 1 MB PDF, C=${C} (mailroom, grpc-js client)`, true);
    const pdfNodemailer = ctx.row('parts-pdf-nodemailer', `nodemailer pool maxConnections=5, the same message, C=${C}`, true);
    const off = ctx.row('parts-dkim-off', `SendMail 2 KB, C=${C}, DKIM off`, true);
    const on = ctx.row('parts-dkim-on', `SendMail 2 KB, C=${C}, DKIM on (RSA 2048)`, true);
    const onEd = ctx.row('parts-dkim-on-ed25519', `SendMail 2 KB, C=${C}, DKIM on (Ed25519)`, true);
    const mailN = ctx.quick ? 2000 : 6000;
    const load = (svc: ServiceProc, extraOpts: Partial<LoadgenOptions>): LoadgenOptions => ({ target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency: C, warmup: 200, count: mailN, ...extraOpts });
    for (let rep = 0; rep < ctx.reps; rep++) {
      const runs: [Row, () => Promise<Measured>][] = [
        [pdfRow, () => measure('loadgen.js', load(plain, { count: n, warmup: 30, attachmentBytes: PDF_BYTES, deadlineMs: 120_000 }), { sink, serverPid: plain.pid })],
        [
          pdfNodemailer,
          () =>
            measure(
              'nodemailer-runner.js',
              { port: sink.port, tls: true, ca: ctx.pki.ca, auth: true, pool: true, maxConnections: 5, concurrency: C, warmup: 30, count: n, attachmentBytes: PDF_BYTES } satisfies NodemailerOptions,
              { sink },
            ),
        ],
        // The lean client: the service, not the load generator, is what signing costs.
        [off, () => measure('loadgen.js', load(plain, { bodyBytes: 2048, client: 'h2' }), { sink, serverPid: plain.pid })],
        [on, () => measure('loadgen.js', load(signing, { bodyBytes: 2048, client: 'h2' }), { sink, serverPid: signing.pid })],
        [onEd, () => measure('loadgen.js', load(signingEd, { bodyBytes: 2048, client: 'h2' }), { sink, serverPid: signingEd.pid })],
      ];
      for (const [row, run] of rep % 2 === 0 ? runs : [...runs].reverse()) {
        ctx.log(`parts rep ${rep + 1}: ${row.label}`);
        row.reps.push(await run());
      }
    }
    ratios.push(ratio('1 MB PDF, C=15: mailroom / nodemailer pool', pdfRow, pdfNodemailer));
    ratios.push(ratio('2 KB, C=15: DKIM on (RSA 2048) / off', on, off));
    ratios.push(ratio('2 KB, C=15: DKIM on (Ed25519) / off', onEd, off));
    // CPU a mail: the service and its caller's client together against nodemailer's process (which composes, encodes and sends in the app).
    const cpu = (m: Measured, withClient: boolean): number => ((m.serverCpuMicros ?? 0) + (withClient ? m.cpuMicros : 0)) / Math.max(1, m.sinkAccepted ?? m.ok);
    const mrCpu = pdfRow.reps.map((m) => cpu(m, true));
    const mrServer = pdfRow.reps.map((m) => cpu(m, false));
    const nmCpu = pdfNodemailer.reps.map((m) => m.cpuMicros / Math.max(1, m.sinkAccepted ?? m.ok));
    extra.push([`1 MB PDF: CPU µs a mail, mailroom service + its gRPC client (service alone) / nodemailer's process (reps)`, `${median(mrCpu).toFixed(0)} (${median(mrServer).toFixed(0)}) / ${median(nmCpu).toFixed(0)}  [${spread(mrCpu, 0)} / ${spread(nmCpu, 0)}]`]);
    const perRep = on.reps.map((m, i) => rate(m) / rate(off.reps[i] as Measured));
    targets.push({ name: `DKIM on (RSA 2048) / off throughput, 2 KB, C=${C} (reps: ${spread(perRep)})`, figure: `${median(perRep).toFixed(2)}×`, limit: '≥ 0.85×', holds: median(perRep) >= 0.85 });
    const perRepEd = onEd.reps.map((m, i) => rate(m) / rate(off.reps[i] as Measured));
    targets.push({ name: `DKIM on (Ed25519) / off throughput, 2 KB, C=${C} (reps: ${spread(perRepEd)})`, figure: `${median(perRepEd).toFixed(2)}×`, limit: '≥ 0.85×', holds: median(perRepEd) >= 0.85 });
    const cpuOn = on.reps.map((m) => cpu(m, false));
    const cpuOff = off.reps.map((m) => cpu(m, false));
    extra.push([`DKIM: service CPU µs a mail on / off (reps)`, `${median(cpuOn).toFixed(0)} / ${median(cpuOff).toFixed(0)}  [${spread(cpuOn, 0)} / ${spread(cpuOff, 0)}]`]);
    extra.push(['parts: message', `${BENCH_MAIL.subject}; PDF of ${PDF_BYTES} bytes of seeded noise; DKIM rsa-sha256 relaxed/relaxed`]);
  } finally {
    for (const s of services) await s.stop();
    for (const s of sinks) await s.stop();
  }
  return { ratios, targets, extra };
}
