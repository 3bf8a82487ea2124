// After boot (--only=boot, with SEED_BIN): CPU per mail over the first
// 4,000 SendMail calls a process takes once it listens (TLS+AUTH, W=5, C=15
// and C=100), mailroom against the Go service it replaces. Each is booted
// anew for every repetition, the two interleaved: what a deploy's first
// seconds cost while V8 has not yet optimised the hot paths.
import type { BenchPki } from './pki.js';
import { median } from './common.js';
import { measure, startNodeSink, startSeed, startService } from './procs.js';
import type { Row, Target } from './report.js';

const FIRST = 4000;

export async function bootScenarios(o: { reps: number; pki: BenchPki; seedBin: string; log: (s: string) => void; row: (id: string, label: string, mail: boolean) => Row }): Promise<Target[]> {
  const sink = await startNodeSink(o.pki);
  const targets: Target[] = [];
  try {
    for (const c of [15, 100]) {
      const rows = [o.row(`boot-mailroom-c${c}`, `first ${FIRST} SendMail after boot, mailroom W=5, C=${c}`, true), o.row(`boot-seed-c${c}`, `first ${FIRST} SendMail after boot, the Go service W=5, C=${c}`, true)] as const;
      const perRep: number[] = [];
      for (let rep = 0; rep < o.reps; rep++) {
        const cpu = [0, 0];
        for (const k of rep % 2 === 0 ? [0, 1] : [1, 0]) {
          const svc = k === 0 ? await startService(sink, { workers: 5, pki: o.pki }) : await startSeed(o.seedBin, sink, { workers: 5, pki: o.pki });
          try {
            o.log(`C=${c} rep ${rep + 1}: ${k === 0 ? 'mailroom' : 'the Go service'}, fresh from boot`);
            const m = await measure('loadgen.js', { target: `127.0.0.1:${svc.port}`, method: 'SendMail', concurrency: c, warmup: 0, count: FIRST }, { sink, serverPid: svc.pid });
            rows[k]?.reps.push(m);
            cpu[k] = (m.serverCpuMicros ?? 0) / FIRST;
          } finally {
            await svc.stop();
          }
        }
        perRep.push((cpu[0] ?? 0) / (cpu[1] ?? 1));
      }
      const m = median(perRep);
      targets.push({ name: `CPU per mail, the first ${FIRST} calls after boot vs the Go service, C=${c} (reps: ${perRep.map((r) => r.toFixed(2)).join(', ')})`, figure: `${m.toFixed(2)}×`, limit: '≤ 2.50×', holds: m <= 2.5 });
    }
  } finally {
    await sink.stop();
  }
  return targets;
}
