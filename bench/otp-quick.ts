// Quick measurement for issue 4: ValidateCode calls/s through gRPC with 100
// calls in flight, against the real service and against a bare grpc-js server
// whose ValidateCode does nothing. Each server runs in a child process so its
// CPU per call can be measured apart from the client's.
//   npm run build && node dist/bench/otp-quick.js [seconds=3] [rounds=3]
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { boot } from '../src/boot.js';
import { createLogger } from '../src/log.js';
import { loadMailProto } from '../src/rpc/proto.js';
import { createActor } from 'xstate';
import type { OtpServiceHandlers } from '../src/generated/mail/OtpService.js';
import { otpMachine } from '../src/actors/otp.js';
import { CodeHasher } from '../src/otp/code.js';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';
import type { OtpStore } from '../src/otp/store.js';
import { Calls } from '../src/rpc/calls.js';
import { NO_METRICS } from '../src/metrics/service-metrics.js';
import { otpServiceHandlers } from '../src/rpc/otp-service.js';

const IN_FLIGHT = 100;
const ADDRESSES = 10_000;
type Mode = 'bare' | 'handlers' | 'service';
type ToParent = { port: number } | { cpuMicros: number };

async function serve(mode: Mode): Promise<void> {
  let port: number;
  if (mode === 'bare' || mode === 'handlers') {
    const proto = loadMailProto();
    const server = new grpc.Server();
    const handlers: OtpServiceHandlers =
      mode === 'bare'
        ? {
            SendCode: (_call, cb) => cb(null, { status: 'SUCCESS' }),
            ValidateCode: (_call, cb) => cb(null, { status: 'SUCCESS', isValid: false }),
          }
        : otpHandlersAlone();
    server.addService(proto.mail.OtpService.service, handlers);
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  } else {
    const service = await boot(
      { PORT: '0', HOST: '127.0.0.1', MAIL_CAPTURE_DIR: mkdtempSync(join(tmpdir(), 'mailroom-bench-')), OTP_MAX_ATTEMPTS: '100' },
      { log: createLogger({ level: 'error', format: 'json', silent: true }) },
    );
    // Live codes for the checked addresses, put straight into the actor's store.
    const { store, hasher } = service.otp.getSnapshot().context;
    seed(store, hasher);
    port = service.port;
  }
  // A normal exit, so that --cpu-prof (BENCH_PROFILE=bare|service) writes its profile.
  process.once('SIGINT', () => process.exit(0));
  let start = process.cpuUsage();
  process.on('message', (m: string) => {
    if (m === 'mark') start = process.cpuUsage();
    if (m === 'report') {
      const d = process.cpuUsage(start);
      process.send?.({ cpuMicros: d.user + d.system } satisfies ToParent);
    }
  });
  process.send?.({ port } satisfies ToParent);
}

/** OtpService handlers and actor on a plain server: no access log, no mail pool. */
function otpHandlersAlone(): OtpServiceHandlers {
  const log = createLogger({ level: 'error', format: 'json', silent: true });
  const store = new InMemoryOtpStore({ lifespanMs: 3_600_000, maxAttempts: 100, resendCooldownMs: 0, maxSendsPerHour: 10 });
  const hasher = new CodeHasher(undefined);
  seed(store, hasher);
  const templates = { subject: '{{code}}', text: '{{code}}', html: '' };
  const otp = createActor(otpMachine, {
    input: {
      options: { length: 6, lifespanMs: 3_600_000, resendCooldownMs: 0, cleanupMs: 60_000, returnCode: false, templates },
      store,
      hasher,
      mailer: { send: () => ({ result: Promise.reject(new Error('no mail in this bench')), cancel: () => undefined }) },
      log,
    },
  }).start();
  return otpServiceHandlers({ mailbox: otp, calls: new Calls(log), hasher, codeLength: 6, limits: { maxSendsPerMinute: 0, maxChecksPerSecond: 0, maxSendsPerKeyPerHour: 0, maxChecksPerKeyPerMinute: 0 }, metrics: NO_METRICS, log });
}

function seed(store: OtpStore, hasher: CodeHasher): void {
  const now = Date.now();
  for (let i = 0; i < ADDRESSES; i++) {
    store.reserve(`user${i}@example.com`, now);
    store.commit(`user${i}@example.com`, hasher.hash(`user${i}@example.com`, '123456'), now);
  }
}

function nextMessage(child: ChildProcess): Promise<ToParent> {
  return once(child, 'message').then(([m]) => m as ToParent);
}

async function measure(mode: Mode, seconds: number): Promise<{ perSecond: number; cpuMicrosPerCall: number }> {
  const execArgv = process.env.BENCH_PROFILE === mode ? ['--cpu-prof', '--cpu-prof-dir=var/prof'] : [];
  const child = fork(fileURLToPath(import.meta.url), ['--serve', mode], { stdio: 'inherit', execArgv });
  const { port } = (await nextMessage(child)) as { port: number };
  const proto = loadMailProto();
  const client = new proto.mail.OtpService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  let calls = 0;
  let counting = false;
  let running = true;
  let n = 0;
  const loop = (done: () => void): void => {
    if (!running) {
      done();
      return;
    }
    const email = `user${n++ % ADDRESSES}@example.com`;
    client.ValidateCode({ email, otpCode: '654321' }, (err) => {
      if (err) throw err;
      if (counting) calls++;
      loop(done);
    });
  };
  const loops = Array.from({ length: IN_FLIGHT }, () => new Promise<void>((resolve) => loop(resolve)));
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  child.send('mark');
  counting = true;
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const counted = calls;
  child.send('report');
  const { cpuMicros } = (await nextMessage(child)) as { cpuMicros: number };
  running = false;
  await Promise.all(loops);
  client.close();
  child.kill('SIGINT');
  await once(child, 'exit');
  return { perSecond: counted / elapsed, cpuMicrosPerCall: cpuMicros / counted };
}

/**
 * The OTP part alone, in this process: handler (validation, HMAC), batcher,
 * actor, store and reply, 100 calls per event-loop turn, without gRPC. The
 * figure other work on the machine disturbs least.
 */
async function handlerPathMicros(calls: number): Promise<number> {
  const handlers = otpHandlersAlone();
  const requests = Array.from({ length: ADDRESSES }, (_, i) => ({ request: { email: `user${i}@example.com`, otpCode: '654321' } }));
  let answered = 0;
  const callback = (): void => {
    answered++;
  };
  const turns = async (n: number): Promise<void> => {
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < IN_FLIGHT; i++) {
        const call = requests[(t * IN_FLIGHT + i) % ADDRESSES] as unknown as Parameters<OtpServiceHandlers['ValidateCode']>[0];
        handlers.ValidateCode(call, callback);
      }
      await new Promise((r) => setImmediate(r));
    }
  };
  await turns(500);
  const start = process.cpuUsage();
  await turns(calls / IN_FLIGHT);
  const d = process.cpuUsage(start);
  if (answered !== 500 * IN_FLIGHT + calls) throw new Error(`${answered} answers`);
  return (d.user + d.system) / calls;
}

if (process.argv[2] === '--serve') {
  await serve(process.argv[3] as Mode);
} else {
  // Other work on the machine skews any one run: the modes take turns, and
  // each reports its best round.
  const seconds = Number(process.argv[2] ?? 3);
  const rounds = Number(process.argv[3] ?? 3);
  const modes: [Mode, string][] = [
    ['bare', 'bare grpc-js no-op server'],
    ['handlers', 'OTP handlers + actor alone'],
    ['service', 'mailroom service (boot)'],
  ];
  const best = new Map<Mode, { perSecond: number; cpuMicrosPerCall: number }>();
  for (let r = 0; r < rounds; r++) {
    for (const [mode] of modes) {
      const m = await measure(mode, seconds);
      const b = best.get(mode);
      best.set(mode, { perSecond: Math.max(b?.perSecond ?? 0, m.perSecond), cpuMicrosPerCall: Math.min(b?.cpuMicrosPerCall ?? Infinity, m.cpuMicrosPerCall) });
    }
  }
  process.stdout.write(`ValidateCode, ${IN_FLIGHT} calls in flight, best of ${rounds} rounds of ${seconds} s\n`);
  let inProcess = Infinity;
  for (let r = 0; r < rounds; r++) inProcess = Math.min(inProcess, await handlerPathMicros(200_000));
  for (const [mode, name] of modes) {
    const b = best.get(mode)!;
    const ratio = b.perSecond / best.get('bare')!.perSecond;
    process.stdout.write(
      `${name.padEnd(28)} ${Math.round(b.perSecond).toString().padStart(7)} calls/s (${ratio.toFixed(2)}x)   server CPU ${b.cpuMicrosPerCall.toFixed(1)} µs/call\n`,
    );
  }
  process.stdout.write(`${'OTP path in-process, no gRPC'.padEnd(28)} ${' '.repeat(26)} CPU ${inProcess.toFixed(1)} µs/call\n`);
}
