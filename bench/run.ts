// npm run bench [-- --quick] [-- --profile]
// Every party in its own process: SMTP sink, mailroom (built output), gRPC
// load generator, nodemailer runner, no-op grpc-js server. Each scenario is
// the median of 3 repetitions (1 with --quick); ratios are taken pair by pair
// within each repetition. Table on stdout, JSON in bench/results/latest.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { makePki } from './pki.js';
import { ROOT, measure, startNodeSink, startNoopServer, startSeed, startService, startSmtpSink, killChildren, type Measured, type Sink, type ServiceProc } from './procs.js';
import { cpuPerCall, ratio, render, summarise, type Ratio, type Row, type Target } from './report.js';
import { median } from './common.js';
import type { LoadgenOptions } from './loadgen.js';
import type { NodemailerOptions } from './nodemailer-runner.js';
import { otpScenarios } from './otp.js';
import { bounceScenarios } from './bounces.js';
import { tracingScenarios } from './tracing.js';
import { bootScenarios } from './boot.js';
import { abScenarios, type AbScenario } from './ab.js';
import { memoryBudget } from './memory.js';
import { startRedis } from '../test/redis-server.js';
import { inspectorCost } from './inspect.js';
import { distanceScenarios } from './distance.js';
import { outboxScenarios } from './outbox.js';
import { barPlot } from './plot.js';
import { partsScenarios } from './parts.js';
import { depthScenarios } from './depth.js';
import { laneScenarios } from './lanes.js';

/** The value of `--name=value` on the command line, if given. */
const arg = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = process.argv.includes('--quick');
const profile = process.argv.includes('--profile');
// --only=tls,plain,rpc,otp,memory,metrics,redis,inspect,distance,parts,outbox,depth,lanes,bounces,tracing,boot runs some groups (outbox, depth, lanes, bounces, tracing and boot only when named; boot needs SEED_BIN; --postfix=PORT: the Postfix anchor, and depth's relay) (--rtt=0,20,50 for distance); w1only with tls skips the WORKERS=5 pairs
const only = arg('only')?.split(',');
// --baseline=<checkout with a built dist/>: the ab group compares this build with that one
const baseline = arg('baseline');
// --reps=N: more repetitions narrow the median on a noisy machine
const repsArg = arg('reps');
const REPS = repsArg !== undefined ? Math.max(1, Number.parseInt(repsArg, 10) || 1) : quick ? 1 : 3;
// --mail=N --warm=N: calls per SendMail run and warm-up before it (CPU per mail is judged at 20,000 after 5,000)
const mailArg = arg('mail');
const warmArg = arg('warm');
const N = {
  mail: mailArg !== undefined ? Number(mailArg) : quick ? 2000 : 6000,
  mailWarm: warmArg !== undefined ? Number(warmArg) : quick ? 300 : 600,
  perMessage: quick ? 400 : 1200,
  perMessageWarm: quick ? 50 : 100,
  rpc: quick ? 10_000 : 30_000,
  rpcWarm: quick ? 1000 : 3000,
};
const RESULTS = join(ROOT, 'bench', 'results');
mkdirSync(RESULTS, { recursive: true });
// SEED_BIN=<the Go service's binary>: its rows beside mailroom's (tls and distance groups)
const SEED_BIN = process.env.SEED_BIN;
// --quick with no --only: a smoke run of the groups that answer in a minute on two cores.
const QUICK_GROUPS = ['tls', 'rpc'];
// --scenarios=send-c15,send-c100: which A/B scenarios the ab, bounces and tracing groups run (default: theirs)
const abPick = arg('scenarios')?.split(',') as AbScenario[] | undefined;
const picked = abPick !== undefined ? { scenarios: abPick } : {};
const want = (group: string): boolean => (only === undefined ? !quick || QUICK_GROUPS.includes(group) : only.includes(group));
// Warnings (a child's MaxListenersExceededWarning and the like) would mix into the tables: children print none,
// and this process's are counted at the end instead.
process.env.NODE_NO_WARNINGS = '1';
const warnings: string[] = [];
process.removeAllListeners('warning');
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

const rows: Row[] = [];
const ratios: Ratio[] = [];
const targets: Target[] = [];
const extra: [string, string][] = [];
const started = Date.now();
const log = (s: string): void => {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${s}\n`);
};

function row(id: string, label: string, mail: boolean): Row {
  const r: Row = { id, label, mail, reps: [] };
  rows.push(r);
  return r;
}

async function sendMailRun(r: Row, svc: ServiceProc, sink: Sink, concurrency: number): Promise<void> {
  const opts: LoadgenOptions = { target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency, warmup: N.mailWarm, count: N.mail };
  r.reps.push(await measure('loadgen.js', opts, { sink, serverPid: svc.pid }));
}

async function nodemailerRun(r: Row, sink: Sink, o: { tls: boolean; ca?: string; pool: boolean; maxConnections: number; concurrency: number }): Promise<void> {
  const perMessage = !o.pool;
  const opts: NodemailerOptions = {
    port: sink.port,
    auth: o.tls,
    ...o,
    warmup: perMessage ? N.perMessageWarm : N.mailWarm,
    count: perMessage ? N.perMessage : N.mail,
  };
  r.reps.push(await measure('nodemailer-runner.js', opts, { sink }));
}

/**
 * A service fresh from boot runs cold (V8 has not optimised its hot paths
 * yet), and the first repetition would measure that: one discarded run of
 * SendMail at C=100 first.
 */
async function warm(server: { port: number; pid: number }, what: string): Promise<void> {
  log(`warming ${what}`);
  await measure('loadgen.js', { target: `127.0.0.1:${server.port}`, method: 'SendMail', concurrency: 100, warmup: N.mailWarm, count: N.mail }, { serverPid: server.pid });
}

async function settleRss(svc: ServiceProc): Promise<number> {
  await new Promise((r) => setTimeout(r, 1000));
  return Math.round(svc.rssMb() * 10) / 10;
}

/** 1-minute load average: other work on the machine skews every figure. */
function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

const QUICK_SAYS = [
  'quick run: 1 repetition of a few thousand calls, groups tls and rpc only (--only=... picks others).',
  'It shows that the bench and the service work, and roughly how fast. It cannot judge a target: its figures are one noisy sample;',
  'targets are judged by a full run (3+ repetitions, 20,000 calls after 5,000 warm). A "NO" in a quick run is not a verdict.',
].join('\n');

async function main(): Promise<void> {
  const loadBefore = loadAverage();
  if (loadBefore > 0.5) log(`load average ${loadBefore} before the run: other processes share these CPUs, figures will be noisy`);
  log(`${quick ? 'quick' : 'full'} run, ${REPS} repetition(s), ${cpus().length} CPUs, node ${process.version}`);
  if (quick) log(QUICK_SAYS);
  const pki = makePki();
  const profileDir = profile ? join(RESULTS, 'profiles') : undefined;

  // ---- SendMail over implicit TLS + AUTH ----------------------------------
  if (want('tls')) {
    const sink = await startNodeSink(pki);
    log(`TLS+AUTH sink (node) on ${sink.port}`);
    const svc = await startService(sink, { workers: 5, pki, profileDir });
    const idle = await settleRss(svc);
    extra.push(['mailroom idle RSS (WORKERS=5, TLS pool up)', `${idle} MB`]);
    targets.push({ name: 'idle RSS', figure: `${idle} MB`, limit: '≤ 100 MB', holds: idle <= 100 });
    // The Go service mailroom replaces, side by side when SEED_BIN names its build.
    const seed = SEED_BIN !== undefined ? await startSeed(SEED_BIN, sink, { workers: 5, pki }) : undefined;
    // and grpc-js alone taking the same calls: the part of mailroom's CPU per mail no change of ours removes
    const bare = await startNoopServer();
    for (const [server, what] of [[svc, 'mailroom'], [seed, 'the Go service'], [bare, 'bare grpc-js']] as const) if (server !== undefined) await warm(server, what);
    const cpuBars: { label: string; value: number; group: number }[] = [];
    const unaryGo: number[] = [];
    for (const c of only?.includes('w1only') === true ? [] : [15, 100]) {
      const mr = row(`mailroom-w5-c${c}`, `SendMail TLS+AUTH, mailroom WORKERS=5, C=${c}`, true);
      const go = seed !== undefined ? row(`seed-w5-c${c}`, `SendMail TLS+AUTH, the Go service WORKERS=5, C=${c}`, true) : undefined;
      const pool = row(`nodemailer-pool5-c${c}`, `nodemailer pool maxConnections=5, C=${c}`, true);
      const per = row(`nodemailer-per-message-c${c}`, `nodemailer new connection per message, C=${c}`, true);
      const floor = row(`grpc-floor-sendmail-c${c}`, `bare grpc-js answering SendMail at once (floor, no SMTP), C=${c}`, false);
      const bareSmtp = row(`bare-smtp-c${c}`, `bare SMTP path: Node TLS, 5 connections, pipelined, no gRPC (floor), C=${c}`, true);
      for (let rep = 0; rep < REPS; rep++) {
        log(`C=${c} rep ${rep + 1}: bare grpc-js`);
        floor.reps.push(await measure('loadgen.js', { target: `127.0.0.1:${bare.port}`, method: 'SendMail', concurrency: c, warmup: N.mailWarm, count: N.mail }, { serverPid: bare.pid }));
        log(`C=${c} rep ${rep + 1}: mailroom`);
        await sendMailRun(mr, svc, sink, c);
        if (seed !== undefined && go !== undefined) {
          log(`C=${c} rep ${rep + 1}: the Go service`);
          await sendMailRun(go, seed, sink, c);
        }
        log(`C=${c} rep ${rep + 1}: bare SMTP path`);
        bareSmtp.reps.push(await measure('bare-smtp-runner.js', { port: sink.port, ca: pki.ca, connections: 5, concurrency: c, warmup: N.mailWarm, count: N.mail }, { sink }));
        log(`C=${c} rep ${rep + 1}: nodemailer pool`);
        await nodemailerRun(pool, sink, { tls: true, ca: pki.ca, pool: true, maxConnections: 5, concurrency: c });
        log(`C=${c} rep ${rep + 1}: nodemailer per message`);
        await nodemailerRun(per, sink, { tls: true, ca: pki.ca, pool: false, maxConnections: 1, concurrency: c });
      }
      cpuBars.push(
        { label: `mailroom SendMail, C=${c}`, value: summarise(mr).cpuPerCallUs, group: 0 },
        ...(go !== undefined ? [{ label: `the Go service SendMail, C=${c}`, value: summarise(go).cpuPerCallUs, group: 2 }] : []),
        { label: `nodemailer pool (its process), C=${c}`, value: summarise(pool).cpuPerCallUs, group: 3 },
        { label: `bare grpc-js answering at once, C=${c}`, value: summarise(floor).cpuPerCallUs, group: 6 },
        { label: `bare SMTP path (Node TLS, pipelined), C=${c}`, value: summarise(bareSmtp).cpuPerCallUs, group: 5 },
      );
      if (go !== undefined) unaryGo.push(summarise(go).cpuPerCallUs);
      const rp = ratio(`mailroom W=5 / nodemailer pool 5, C=${c}`, mr, pool);
      ratios.push(rp, ratio(`mailroom W=5 / nodemailer per message, C=${c}`, mr, per));
      const least = c >= 100 ? 1.3 : 1.15;
      targets.push({ name: `SendMail W=5 C=${c} throughput vs pool (reps: ${rp.perRep.throughput.join(', ')})`, figure: `${rp.throughput.toFixed(2)}×`, limit: `≥ ${least.toFixed(2)}×`, holds: rp.throughput >= least });
      targets.push({ name: `SendMail W=5 C=${c} p99 vs pool`, figure: `${rp.p99.toFixed(2)}×`, limit: '≤ 1.00×', holds: rp.p99 <= 1 });
      const cpu = summarise(mr).cpuPerCallUs;
      targets.push({ name: `mailroom CPU per delivered mail, TLS+AUTH, C=${c}`, figure: `${cpu} µs`, limit: '≤ 250 µs', holds: cpu <= 250 });
      const floors = summarise(floor).cpuPerCallUs + summarise(bareSmtp).cpuPerCallUs;
      extra.push([`C=${c}: CPU of grpc-js alone + the bare SMTP path (the floors) / mailroom's per mail`, `${summarise(floor).cpuPerCallUs} + ${summarise(bareSmtp).cpuPerCallUs} = ${floors} / ${cpu} µs`]);
      if (go !== undefined) {
        const rg = ratio(`mailroom W=5 / the Go service W=5, C=${c}`, mr, go);
        ratios.push(rg);
        targets.push({ name: `SendMail W=5 C=${c} throughput vs the Go service (reps: ${rg.perRep.throughput.join(', ')})`, figure: `${rg.throughput.toFixed(2)}×`, limit: '≥ 1.00×', holds: rg.throughput >= 1 });
        const cpuGo = summarise(go).cpuPerCallUs;
        const perRep = mr.reps.map((m, i) => cpuPerCall(m, true) / cpuPerCall(go.reps[i] as Measured, true));
        const cpuRatio = median(perRep);
        extra.push([`C=${c}: the floors alone / the Go service's whole cost per mail`, `${(floors / cpuGo).toFixed(2)}× (budget at 1.5×: ${Math.round(1.5 * cpuGo)} µs, ${Math.round(1.5 * cpuGo - floors)} µs above the floors)`]);
        targets.push({
          name: `CPU per mail vs the Go service, C=${c}: ${cpu} vs ${cpuGo} µs (reps: ${perRep.map((x) => x.toFixed(2)).join(', ')})`,
          figure: `${cpuRatio.toFixed(2)}×`,
          limit: '≤ 1.50×',
          holds: cpuRatio <= 1.5,
        });
      }
    }
    // SendMailBatch: 100 messages a call, three calls in flight.
    const batchRow = row('mailroom-batch100', 'SendMailBatch of 100 TLS+AUTH, mailroom WORKERS=5, 3 calls in flight', true);
    for (let rep = 0; rep < REPS; rep++) {
      log(`batch rep ${rep + 1}: mailroom SendMailBatch of 100`);
      const opts: LoadgenOptions = { target: `127.0.0.1:${svc.port}`, method: 'SendMailBatch', batchSize: 100, concurrency: 3, warmup: 6, count: Math.round(N.mail / 100) };
      batchRow.reps.push(await measure('loadgen.js', opts, { sink, serverPid: svc.pid }));
    }
    const batchCpu = summarise(batchRow).cpuPerCallUs;
    cpuBars.splice(1, 0, { label: 'mailroom SendMailBatch of 100', value: batchCpu, group: 1 });
    if (unaryGo.length > 0) {
      const goLeast = Math.min(...unaryGo);
      targets.push({ name: `CPU per mail, SendMailBatch of 100 / the Go service's unary (its cheaper row, ${goLeast} µs)`, figure: `${(batchCpu / goLeast).toFixed(2)}×`, limit: '≤ 0.60×', holds: batchCpu / goLeast <= 0.6 });
    }
    writeFileSync(join(RESULTS, 'cpu.svg'), barPlot(cpuBars, 'µs'));
    extra.push(['CPU per mail (plot)', 'bench/results/cpu.svg']);
    await svc.stop();
    await seed?.stop();
    await bare.stop();

    const svc1 = await startService(sink, { workers: 1, pki, profileDir });
    await warm(svc1, 'mailroom WORKERS=1');
    const mr1 = row('mailroom-w1-c15', 'SendMail TLS+AUTH, mailroom WORKERS=1, C=15', true);
    const pool1 = row('nodemailer-pool1-c15', 'nodemailer pool maxConnections=1, C=15', true);
    for (let rep = 0; rep < REPS; rep++) {
      log(`WORKERS=1 rep ${rep + 1}: mailroom`);
      await sendMailRun(mr1, svc1, sink, 15);
      log(`WORKERS=1 rep ${rep + 1}: nodemailer pool 1`);
      await nodemailerRun(pool1, sink, { tls: true, ca: pki.ca, pool: true, maxConnections: 1, concurrency: 15 });
    }
    const r1 = ratio('mailroom W=1 / nodemailer pool 1, C=15', mr1, pool1);
    ratios.push(r1);
    targets.push({ name: 'SendMail W=1 throughput vs pool of 1', figure: `${r1.throughput.toFixed(2)}×`, limit: '≥ 1.00×', holds: r1.throughput >= 1 });
    await svc1.stop();
    await sink.stop();
  }

  // ---- SendMail in plain SMTP (smtp-sink when installed) ------------------
  if (want('plain')) {
    const sink = (await startSmtpSink()) ?? (await startNodeSink(undefined));
    log(`plain sink (${sink.kind}) on ${sink.port}`);
    extra.push(['plain-SMTP sink', sink.kind === 'smtp-sink' ? 'postfix smtp-sink (C)' : 'node sink (smtp-sink not installed)']);
    const svc = await startService(sink, { workers: 5, profileDir });
    const mr = row('mailroom-plain-w5-c100', `SendMail plain (${sink.kind}), mailroom WORKERS=5, C=100`, true);
    const pool = row('nodemailer-plain-pool5-c100', `nodemailer plain (${sink.kind}) pool 5, C=100`, true);
    for (let rep = 0; rep < REPS; rep++) {
      log(`plain rep ${rep + 1}: mailroom`);
      await sendMailRun(mr, svc, sink, 100);
      log(`plain rep ${rep + 1}: nodemailer pool`);
      await nodemailerRun(pool, sink, { tls: false, pool: true, maxConnections: 5, concurrency: 100 });
    }
    ratios.push(ratio('mailroom W=5 / nodemailer pool 5, plain, C=100', mr, pool));
    await svc.stop();
    await sink.stop();
  }

  // ---- the floor and OTP ---------------------------------------------------
  if (want('rpc') || want('otp')) {
    const noop = await startNoopServer();
    const floor = row('grpc-noop-c100', 'bare grpc-js no-op unary (floor), C=100', false);
    const runFloor = async (): Promise<Row> => {
      const opts: LoadgenOptions = { target: `127.0.0.1:${noop.port}`, method: 'Noop', concurrency: 100, warmup: N.rpcWarm, count: N.rpc };
      floor.reps.push(await measure('loadgen.js', opts, { serverPid: noop.pid }));
      return floor;
    };
    if (want('otp')) {
      const out = await otpScenarios({ quick, reps: REPS, n: N, pki, profileDir, log, runFloor, row });
      ratios.push(...out.ratios);
      targets.push(...out.targets);
      extra.push(...out.extra);
    } else {
      for (let rep = 0; rep < REPS; rep++) await runFloor();
    }
    await noop.stop();
    if (want('rpc')) {
      // The gRPC hop on its own at the SendMail C=15 concurrency: what any
      // grpc-js service's latency starts from here, before it does any work;
      // then a server that takes the same SendMail calls and only waits 2 ms
      // each (no CPU), which brings the call rate down to about SendMail's,
      // where the hop's tail is what a sender at that rate cannot go below.
      for (const waitMs of [0, 2]) {
        const server = await startNoopServer(waitMs);
        const r = waitMs === 0 ? row('grpc-noop-c15', 'bare grpc-js no-op unary (floor), C=15', false) : row('grpc-wait2-c15', 'grpc-js server answering SendMail after a 2 ms timer, C=15', false);
        for (let rep = 0; rep < REPS; rep++) {
          log(`${r.id} rep ${rep + 1}`);
          const opts: LoadgenOptions = { target: `127.0.0.1:${server.port}`, method: waitMs === 0 ? 'Noop' : 'SendMail', concurrency: 15, warmup: N.rpcWarm, count: waitMs === 0 ? N.rpc : N.mail };
          r.reps.push(await measure('loadgen.js', opts, { serverPid: server.pid }));
        }
        await server.stop();
      }
    }
  }

  // ---- the memory budget under a flood of 1 MB calls ----------------------
  if (want('memory')) {
    const out = await memoryBudget({ reps: quick ? 1 : REPS, pki, log, row });
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- what metrics cost: SendMail C=100 with METRICS_PORT set and not -----
  if (want('metrics')) {
    const [cost] = await abScenarios({
      reps: REPS,
      pki,
      n: N,
      parties: [{ name: 'metrics on', env: { METRICS_PORT: '0' } }, { name: 'metrics off' }],
      log,
      row,
      scenarios: ['send-c100'],
    });
    if (cost !== undefined) {
      ratios.push(cost);
      targets.push({ name: 'SendMail C=100 throughput, metrics on / off', figure: `${cost.throughput.toFixed(2)}×`, limit: '≥ 0.97×', holds: cost.throughput >= 0.97 });
    }
  }

  // ---- round trips: the senders at 0, 20 and 50 ms from the relay ------------
  if (want('distance')) {
    const rtts = (arg('rtt') ?? '0,20,50').split(',').map(Number);
    const out = await distanceScenarios({ reps: REPS, quick, pki, rtts, seedBin: SEED_BIN, log, row });
    ratios.push(...out.ratios);
    targets.push(...out.targets);
    extra.push(...out.extra);
    writeFileSync(join(RESULTS, 'distance.svg'), out.svg);
    extra.push(['throughput against round trip (plot)', 'bench/results/distance.svg']);
  }

  // ---- what the inspector costs with a page watching ------------------------
  if (want('inspect')) {
    const out = await inspectorCost({ reps: REPS, pki, n: N, log, row });
    ratios.push(...out.ratios);
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- OTP through Redis against OTP in memory, interleaved ------------------
  if (want('redis')) {
    const redis = await startRedis();
    try {
      const shared = { REDIS_URL: redis.url, OTP_SECRET: 'bench secret, the same on every replica' };
      const out = await abScenarios({
        reps: REPS,
        pki,
        n: N,
        parties: [{ name: 'Redis', env: shared }, { name: 'in memory' }],
        log,
        row,
        scenarios: ['validate-c100', 'sendcode-c100'],
      });
      ratios.push(...out);
      const validate = out[0];
      if (validate !== undefined) {
        targets.push({ name: 'ValidateCode C=100 throughput, Redis / in memory', figure: `${validate.throughput.toFixed(2)}×`, limit: '≥ 0.60×', holds: validate.throughput >= 0.6 });
      }
    } finally {
      await redis.stop();
    }
  }

  // ---- the pipeline's depth against a real Postfix at a distance -----------
  if (only?.includes('depth') === true) {
    const postfix = arg('postfix');
    if (postfix === undefined) throw new Error('--only=depth needs --postfix=PORT of a running ../shared/tools/postfix-sink.sh');
    const out = await depthScenarios({ reps: REPS, quick, postfixPort: Number(postfix), log, row });
    targets.push(...out.targets);
    extra.push(...out.extra);
    writeFileSync(join(RESULTS, 'depth.svg'), out.svg);
    extra.push(['throughput against round trip, adaptive and fixed depths (plot)', 'bench/results/depth.svg']);
  }

  // ---- lanes: a code's wait behind a backlog, against a real Postfix at 50 ms ----
  if (only?.includes('lanes') === true) {
    const postfix = arg('postfix');
    if (postfix === undefined) throw new Error('--only=lanes needs --postfix=PORT of a running ../shared/tools/postfix-sink.sh');
    const out = await laneScenarios({ reps: REPS, quick, postfixPort: Number(postfix), baseline, log });
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- delivery reports: BOUNCE_DOMAIN set against not; a suppressed refusal's cost ----
  if (only?.includes('bounces') === true) {
    const out = await bounceScenarios({ reps: REPS, pki, n: N, log, row, ...picked });
    ratios.push(...out.ratios);
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- the first calls after boot, against the Go service -------------------
  if (only?.includes('boot') === true) {
    if (SEED_BIN === undefined) log('boot: needs SEED_BIN (the Go service to compare with); skipped');
    else targets.push(...(await bootScenarios({ reps: REPS, pki, seedBin: SEED_BIN, log, row })));
  }

  // ---- tracing: OTLP export on (ratio 1.0) against off ----------------------
  if (only?.includes('tracing') === true) {
    const out = await tracingScenarios({ reps: REPS, pki, n: N, log, row, ...picked });
    ratios.push(...out.ratios);
    extra.push(...out.extra);
  }

  // ---- attachments and DKIM ----------------------------------------------
  if (want('parts')) {
    const out = await partsScenarios({ reps: REPS, quick, pki, profileDir: profile ? join(RESULTS, 'profiles') : undefined, log, row });
    ratios.push(...out.ratios);
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- the outbox: durable accepts, delivery out of it, memory -------------
  if (only?.includes('outbox') === true) {
    const postfix = arg('postfix');
    const out = await outboxScenarios({ reps: REPS, quick, pki, postfixPort: postfix === undefined ? undefined : Number(postfix), log, row });
    ratios.push(...out.ratios);
    targets.push(...out.targets);
    extra.push(...out.extra);
  }

  // ---- A/B against another build, interleaved ------------------------------
  if (baseline !== undefined && (only === undefined || only.includes('ab'))) {
    log(`A/B against the build in ${baseline}`);
    const out = await abScenarios({ reps: REPS, pki, n: N, parties: [{ name: 'this build' }, { name: 'baseline', root: baseline }], log, row, ...picked });
    ratios.push(...out);
    extra.push(['A/B baseline', baseline]);
  }

  // Every send a sender reported as done must be one the sink itself accepted.
  const mailRows = rows.filter((r) => r.mail && r.reps.length > 0);
  const uncounted = mailRows.flatMap((r) => r.reps.filter((m) => (m.sinkAccepted ?? 0) < m.ok).map(() => r.id));
  extra.push(['sink count check', uncounted.length === 0 ? `every reported send was counted by the sink (${mailRows.length} scenarios)` : `MISMATCH in ${[...new Set(uncounted)].join(', ')}`]);
  extra.push(['load average (1 min) before / after the run', `${loadBefore} / ${loadAverage()} on ${cpus().length} CPUs`]);
  const summaries = rows.filter((r) => r.reps.length > 0).map(summarise);
  if (warnings.length > 0) extra.push(['warnings during the run', [...new Set(warnings)].join('; ').slice(0, 300)]);
  const text = render(summaries, ratios, targets, extra);
  process.stdout.write(`\n${text}\n`);
  if (quick) process.stdout.write(`\n${QUICK_SAYS}\n`);
  const json = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    repetitions: REPS,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    sizes: N,
    seconds: Math.round((Date.now() - started) / 1000),
    loadAverageBefore: loadBefore,
    scenarios: summaries,
    raw: Object.fromEntries(rows.map((r) => [r.id, r.reps])),
    ratios,
    targets,
    extra: Object.fromEntries(extra),
  };
  writeFileSync(join(RESULTS, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  log(`done in ${json.seconds} s; JSON in bench/results/latest.json`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
    killChildren();
    process.exit(1);
  },
);
