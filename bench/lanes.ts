// Lanes (--only=lanes --postfix=PORT): how long a code, a SYNC mail and a
// queued HIGH or NORMAL message wait behind a backlog, against a real
// Postfix (../shared/tools/postfix-sink.sh) behind a 50 ms round trip, with
// default settings. A caller ("bulk") queues 5,000 messages falling due at
// once, BULK in one run and NORMAL in another; while they drain another
// caller ("app") sends 20 codes, 20 SYNC mails, and queues 10 HIGH and 10
// NORMAL messages, each timed from its call to its answer (a code, SYNC) or
// to its SENT event (queued). The same probes with nothing queued are the
// yardstick, and the backlog drained alone is the rate the probes may cost
// at most 10% of. With --baseline, the build before runs the same, interleaved.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import type { MailServiceClient } from '../src/generated/mail/MailService.js';
import type { OtpServiceClient } from '../src/generated/mail/OtpService.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { MessageEvent__Output } from '../src/generated/mail/MessageEvent.js';
import { BENCH_MAIL } from './common.js';
import { atDistance, startService, type ServiceProc, type Sink } from './procs.js';
import { postfix, postfixCount } from './postfix.js';
import type { Target } from './report.js';

export interface LanesContext {
  readonly reps: number;
  readonly quick: boolean;
  readonly postfixPort: number;
  /** a checkout with the build before, run beside this one */
  readonly baseline: string | undefined;
  log(s: string): void;
}

const RTT_MS = 50;
const BACKLOG = 5000;
const PROBES = 20;
const QUEUED_PROBES = 10;
const TOKENS = { bulk: 'bulk-token-0123456789abcdef0123456789', app: 'app-token-0123456789abcdef0123456789' } as const;

type Backlog = 'BULK' | 'NORMAL';

interface Probes {
  readonly code: number[];
  readonly sync: number[];
  readonly high: number[];
  readonly normal: number[];
}

interface RunResult {
  readonly probes: Probes;
  /** backlog messages a second, from their due time to the last one in Postfix's log */
  readonly drainRate: number;
}

interface Clients {
  readonly mail: MailServiceClient;
  readonly otp: OtpServiceClient;
  close(): void;
}

function clients(port: number): Clients {
  const proto = loadMailProto();
  const address = `127.0.0.1:${port}`;
  const mail = new proto.mail.MailService(address, grpc.credentials.createInsecure());
  const otp = new proto.mail.OtpService(address, grpc.credentials.createInsecure());
  return { mail, otp, close: () => (mail.close(), otp.close()) };
}

function auth(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

function call<T>(run: (done: grpc.requestCallback<T>) => void): Promise<T> {
  return new Promise((resolve, reject) => run((err, res) => (err ? reject(err) : resolve(res as T))));
}

const mailOf = (i: number, extra: Partial<SendEmailRequest>): SendEmailRequest => ({ to: `rcpt${i}@example.com`, subject: BENCH_MAIL.subject, body: BENCH_MAIL.text, ...extra });

/** SENT times of the app caller's queued messages, as WatchMessages tells them. */
function watchSent(c: Clients): { sentAt: Map<string, number>; close(): void } {
  const sentAt = new Map<string, number>();
  const stream = c.mail.WatchMessages({ after: '' }, auth(TOKENS.app));
  stream.on('data', (e: MessageEvent__Output) => {
    if (e.status?.state === 'MESSAGE_STATE_SENT' && !sentAt.has(e.status.message_id)) sentAt.set(e.status.message_id, performance.now());
  });
  stream.on('error', () => undefined);
  return { sentAt, close: () => stream.cancel() };
}

async function timed(n: number, gapMs: number, one: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await one(i);
    out.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return out;
}

/** Queues `n` messages of `priority` as the app caller, one after another; ms from each call to its SENT. */
async function queuedProbes(c: Clients, watch: ReturnType<typeof watchSent>, n: number, priority: 'PRIORITY_HIGH' | 'PRIORITY_NORMAL', tag: string, gapMs: number): Promise<number[]> {
  const started = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await call<{ message_id: string }>((d) => c.mail.SendMail(mailOf(i, { subject: `${tag} ${i}`, delivery: 'DELIVERY_QUEUED', priority }), auth(TOKENS.app), d));
    started.set(r.message_id, t0);
    await new Promise((res) => setTimeout(res, gapMs));
  }
  const until = performance.now() + 120_000;
  while ([...started.keys()].some((id) => !watch.sentAt.has(id)) && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
  return [...started].map(([id, t0]) => (watch.sentAt.get(id) ?? Infinity) - t0);
}

/** All probes at once, each kind in its own chain: codes, SYNC mails, HIGH and NORMAL queued. */
async function probe(c: Clients, watch: ReturnType<typeof watchSent>, tag: string): Promise<Probes> {
  const [code, sync, high, normal] = await Promise.all([
    timed(PROBES, 50, (i) => call((d) => c.otp.SendCode({ email: `code-${tag}-${i}@example.com` }, auth(TOKENS.app), d))),
    timed(PROBES, 50, (i) => call((d) => c.mail.SendMail(mailOf(i, { subject: `sync ${tag} ${i}` }), auth(TOKENS.app), d))),
    queuedProbes(c, watch, QUEUED_PROBES, 'PRIORITY_HIGH', `high ${tag}`, 100),
    queuedProbes(c, watch, QUEUED_PROBES, 'PRIORITY_NORMAL', `normal ${tag}`, 100),
  ]);
  return { code, sync, high, normal };
}

/** Queues the backlog as the bulk caller, due together `dueInMs` from now; resolves with its due time (performance.now()). */
async function queueBacklog(c: Clients, kind: Backlog, dueInMs: number): Promise<number> {
  const dueAt = Date.now() + dueInMs;
  const send_at = { seconds: String(Math.floor(dueAt / 1000)), nanos: (dueAt % 1000) * 1_000_000 };
  const due = performance.now() + dueInMs;
  const batch = 500;
  for (let i = 0; i < BACKLOG; i += batch) {
    const messages = Array.from({ length: batch }, (_, j) => mailOf(i + j, { delivery: 'DELIVERY_QUEUED', priority: `PRIORITY_${kind}`, send_at }));
    const r = await call<{ results: { code: number; message: string }[] }>((d) => c.mail.SendMailBatch({ messages }, auth(TOKENS.bulk), { deadline: Date.now() + 60_000 }, d));
    const failed = r.results.find((x) => x.code !== 0);
    if (failed !== undefined) throw new Error(`the backlog was refused: ${failed.message}`);
  }
  if (performance.now() > due) throw new Error('the backlog took longer to queue than its due time');
  return due;
}

async function drained(from: number, n: number): Promise<number> {
  const until = performance.now() + 300_000;
  for (;;) {
    if ((await postfixCount()) - from >= n) return performance.now();
    if (performance.now() > until) throw new Error(`Postfix logged ${(await postfixCount()) - from} of ${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withService<T>(sink: Sink, root: string | undefined, run: (c: Clients, svc: ServiceProc) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-lanes-'));
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `bulk ${TOKENS.bulk}\napp ${TOKENS.app}\n`, { mode: 0o600 });
  const svc = await startService(sink, { workers: 5, ...(root !== undefined ? { root } : {}), extraEnv: { AUTH_TOKENS_FILE: tokens, SMTP_DATA_TIMEOUT_MS: '60000' } });
  const c = clients(svc.port);
  try {
    return await run(c, svc);
  } finally {
    c.close();
    await svc.stop();
  }
}

/** The probes with nothing queued, then with the backlog draining; and the backlog's rate. */
async function loadedRun(sink: Sink, root: string | undefined, kind: Backlog, rep: number): Promise<{ idle: Probes; loaded: RunResult }> {
  return withService(sink, root, async (c) => {
    const watch = watchSent(c);
    try {
      await probe(c, watch, `warm-${rep}`);
      const idle = await probe(c, watch, `idle-${rep}`);
      const before = await postfixCount();
      const due = await queueBacklog(c, kind, 4000);
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now()) + 300));
      const probes = await probe(c, watch, `loaded-${rep}`);
      if (process.env.LANES_DEBUG === '1') process.stderr.write(`${kind} loaded probes: ${JSON.stringify({ code: probes.code.map(Math.round), sync: probes.sync.map(Math.round) })}\nidle: ${JSON.stringify({ code: idle.code.map(Math.round) })}\n`);
      const end = await drained(before, BACKLOG);
      return { idle, loaded: { probes, drainRate: BACKLOG / ((end - due) / 1000) } };
    } finally {
      watch.close();
    }
  });
}

async function aloneRun(sink: Sink, root: string | undefined, kind: Backlog): Promise<number> {
  return withService(sink, root, async (c) => {
    const before = await postfixCount();
    const due = await queueBacklog(c, kind, 4000);
    const end = await drained(before, BACKLOG);
    return BACKLOG / ((end - due) / 1000);
  });
}

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);
const median = (xs: readonly number[]): number => sorted(xs)[Math.floor(xs.length / 2)] ?? NaN;
/** p99 of 20 is the largest but none: with so few, the worst of them */
const p99 = (xs: readonly number[]): number => sorted(xs)[Math.min(xs.length - 1, Math.ceil(0.99 * xs.length) - 1)] ?? NaN;
const ms = (x: number): string => (Number.isFinite(x) ? `${Math.round(x)} ms` : 'never');
const reps = (xs: readonly number[], f: (x: number) => string = ms): string => xs.map(f).join(', ');

export async function laneScenarios(ctx: LanesContext): Promise<{ targets: Target[]; extra: [string, string][] }> {
  const sink = await atDistance(postfix(ctx.postfixPort), RTT_MS);
  const parties: { name: string; root: string | undefined }[] = [{ name: 'this build', root: undefined }];
  if (ctx.baseline !== undefined) parties.push({ name: 'the build before', root: ctx.baseline });
  const kinds: Backlog[] = ['BULK', 'NORMAL'];
  type Key = `${string}/${Backlog}`;
  const idle = new Map<Key, Probes[]>();
  const loaded = new Map<Key, RunResult[]>();
  const alone = new Map<Key, number[]>();
  const push = <V>(m: Map<Key, V[]>, k: Key, v: V): void => void m.set(k, [...(m.get(k) ?? []), v]);
  try {
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const kind of kinds) {
        const order = rep % 2 === 0 ? parties : [...parties].reverse();
        for (const p of order) {
          const key: Key = `${p.name}/${kind}`;
          ctx.log(`lanes rep ${rep + 1}: ${p.name}, ${BACKLOG} ${kind} queued: probes`);
          const run = await loadedRun(sink, p.root, kind, rep);
          push(idle, key, run.idle);
          push(loaded, key, run.loaded);
          ctx.log(`lanes rep ${rep + 1}: ${p.name}, ${BACKLOG} ${kind} queued: alone`);
          push(alone, key, await aloneRun(sink, p.root, kind));
        }
      }
    }
  } finally {
    await sink.stop();
  }
  const targets: Target[] = [];
  const extra: [string, string][] = [];
  for (const p of parties) {
    for (const kind of kinds) {
      const key: Key = `${p.name}/${kind}`;
      const runs = loaded.get(key) ?? [];
      const quiet = idle.get(key) ?? [];
      const codeP99 = runs.map((r) => p99(r.probes.code));
      const codeIdle = quiet.map((q) => median(q.code));
      const codeRatio = codeP99.map((x, i) => x / (codeIdle[i] as number));
      const syncP99 = runs.map((r) => p99(r.probes.sync));
      const highP99 = runs.map((r) => p99(r.probes.high));
      const normalP99 = runs.map((r) => p99(r.probes.normal));
      const drain = runs.map((r) => r.drainRate).map((x, i) => x / ((alone.get(key) ?? [])[i] as number));
      const at = `${p.name}, ${BACKLOG} ${kind} queued by another caller, Postfix ${RTT_MS} ms away`;
      const judged = p.root === undefined;
      const row = (name: string, xs: number[], figure: string, limit: string, holds: boolean): void => {
        if (judged) targets.push({ name: `${name}, ${at} (reps: ${reps(xs, name.includes('/') ? (x) => `${x.toFixed(2)}×` : ms)})`, figure, limit, holds });
        else extra.push([`${name}, ${at} (reps)`, `${figure} (${reps(xs, name.includes('/') ? (x) => `${x.toFixed(2)}×` : ms)})`]);
      };
      row('SendCode p99 of 20', codeP99, ms(median(codeP99)), '≤ 1000 ms', median(codeP99) <= 1000);
      row('SendCode p99 loaded / median idle', codeRatio, `${median(codeRatio).toFixed(2)}×`, '≤ 1.5×', median(codeRatio) <= 1.5);
      row('SYNC SendMail p99 of 20', syncP99, ms(median(syncP99)), '≤ 1000 ms', median(syncP99) <= 1000);
      row('HIGH queued → SENT, p99 of 10', highP99, ms(median(highP99)), '≤ 1000 ms', median(highP99) <= 1000);
      row("a second caller's NORMAL queued → SENT, p99 of 10", normalP99, ms(median(normalP99)), '≤ 2000 ms', median(normalP99) <= 2000);
      row('backlog drain rate with the probes / alone', drain, `${median(drain).toFixed(2)}×`, '≥ 0.90×', median(drain) >= 0.9);
      extra.push([`${at}: idle yardsticks, median of medians (code, SYNC, HIGH, NORMAL)`, [quiet.map((q) => median(q.code)), quiet.map((q) => median(q.sync)), quiet.map((q) => median(q.high)), quiet.map((q) => median(q.normal))].map((xs) => ms(median(xs))).join(', ')]);
      extra.push([`${at}: loaded medians of 20 (code, SYNC; reps)`, `${reps(runs.map((r) => median(r.probes.code)))}; ${reps(runs.map((r) => median(r.probes.sync)))}`]);
      extra.push([`${at}: backlog alone, messages/s (reps)`, reps(alone.get(key) ?? [], (x) => x.toFixed(0))]);
    }
  }
  return { targets, extra };
}
