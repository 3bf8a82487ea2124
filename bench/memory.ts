// The memory budget under a flood: 2,000 concurrent SendMail calls of 1 MB
// each against a relay that takes 2 s per message, once with ASCII bodies
// and once with UTF-8 ones (two bytes a character, base64 on the wire). The
// service must stay within 2 × QUEUE_MAX_BYTES + 250 MB, never stall its
// event loop over 200 ms, answer every call, and answer OK exactly as often
// as the relay accepted a message.
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchPki } from './pki.js';
import type { LoadgenOptions } from './loadgen.js';
import { measure, startNodeSink, startService } from './procs.js';
import type { Row, Target } from './report.js';
import type { LoopProbe } from './loop-probe.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const QUEUE_MAX_BYTES = 128 * 1_048_576;

export interface MemoryContext {
  readonly reps: number;
  readonly pki: BenchPki;
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

export async function memoryBudget(ctx: MemoryContext): Promise<{ targets: Target[]; extra: [string, string][] }> {
  const targets: Target[] = [];
  const extra: [string, string][] = [];
  const sink = await startNodeSink(ctx.pki, 2000);
  const probe = join(tmpdir(), `mailroom-loop-${process.pid}.json`);
  const svc = await startService(sink, {
    workers: 5,
    pki: ctx.pki,
    nodeArgs: ['--import', join(HERE, 'loop-probe.js')],
    extraEnv: { MAILROOM_LOOP_PROBE: probe, QUEUE_MAX_BYTES: String(QUEUE_MAX_BYTES), QUEUE_TIMEOUT_MS: '300000', SMTP_DATA_TIMEOUT_MS: '600000' },
  });
  const limitMb = (2 * QUEUE_MAX_BYTES) / 1_048_576 + 250;
  try {
    for (const kind of ['ascii', 'utf8'] as const) {
      const r = ctx.row(`memory-${kind}`, `2,000 concurrent 1 MB SendMail (${kind}), relay 2 s a message, QUEUE_MAX_BYTES=128 MiB`, true);
      const stalls: string[] = [];
      for (let rep = 0; rep < ctx.reps; rep++) {
        ctx.log(`memory budget, ${kind} bodies, rep ${rep + 1}`);
        process.kill(svc.pid, 'SIGUSR2');
        const load: LoadgenOptions = { target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency: 2000, warmup: 0, count: 2000, bodyBytes: 1_000_000, bodyKind: kind, deadlineMs: 600_000 };
        const m = await measure('loadgen.js', load, { sink, serverPid: svc.pid });
        await new Promise((resolve) => setTimeout(resolve, 300));
        const loop = JSON.parse(readFileSync(probe, 'utf8')) as LoopProbe;
        const stall = loop.maxMs;
        stalls.push(`${Math.round(stall)} (CPU in it ${Math.round(loop.cpuInLongestMs)} of ${Math.round(loop.longestGapMs)} ms; longest GC ${Math.round(loop.maxGcMs)} ms)`);
        r.reps.push(m);
        const answered = m.ok + m.errors;
        ctx.log(`  ${m.ok} OK, ${m.errors} refused or failed, relay accepted ${m.sinkAccepted}, peak RSS ${Math.round(m.serverRssMb ?? NaN)} MB, longest stall ${stalls[stalls.length - 1]}`);
        targets.push(
          { name: `memory (${kind}, rep ${rep + 1}): peak RSS`, figure: `${Math.round(m.serverRssMb ?? NaN)} MB`, limit: `≤ ${limitMb} MB`, holds: (m.serverRssMb ?? Infinity) <= limitMb },
          { name: `memory (${kind}, rep ${rep + 1}): longest event-loop stall`, figure: `${Math.round(stall)} ms`, limit: '≤ 200 ms', holds: stall <= 200 },
          { name: `memory (${kind}, rep ${rep + 1}): every call answered`, figure: `${answered} of 2000`, limit: '2000', holds: answered === 2000 },
          { name: `memory (${kind}, rep ${rep + 1}): OK replies = relay's count`, figure: `${m.ok} / ${m.sinkAccepted}`, limit: 'equal', holds: m.ok === m.sinkAccepted },
        );
      }
      extra.push([`memory budget, ${kind}: errors seen`, r.reps.flatMap((m) => m.errorSamples).slice(0, 2).join(' | ') || 'none']);
      extra.push([`memory budget, ${kind}: longest stalls, ms`, stalls.join('; ')]);
    }
  } finally {
    await svc.stop();
    await sink.stop();
  }
  return { targets, extra };
}
