// npm run build && node dist/bench/profile-run.js [C] [count]: one warm
// SendMail run (TLS+AUTH, WORKERS=5) under --cpu-prof, its profile summed
// by function and by file: where mailroom's CPU per mail goes.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki } from './pki.js';
import { measure, startNodeSink, startService } from './procs.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
  hitCount?: number;
}

const concurrency = Number(process.argv[2] ?? 15);
const count = Number(process.argv[3] ?? 20_000);
const dir = process.argv[4] ?? '/tmp/prof';
const pki = makePki();
const sink = await startNodeSink(pki);
const svc = await startService(sink, { workers: 5, pki, profileDir: dir });
const target = `127.0.0.1:${svc.port}`;
await measure('loadgen.js', { target, method: 'SendMail', concurrency, warmup: 5000, count: 1000 }, { serverPid: svc.pid });
const m = await measure('loadgen.js', { target, method: 'SendMail', concurrency, warmup: 100, count }, { sink, serverPid: svc.pid });
await svc.stop();
await sink.stop();
process.stdout.write(`${JSON.stringify({ concurrency, count, cpuPerCallUs: Math.round((m.serverCpuMicros ?? 0) / count) })}\n`);
// The main thread's profile: the one with the fewest idle samples (the outbox worker's is nearly all idle).
const busy = (p: { nodes: Node[]; samples: number[] }): number => p.samples.length - p.nodes.filter((n) => n.callFrame.functionName === '(idle)').reduce((s, n) => s + (n.hitCount ?? 0), 0);
const profiles = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => ({ file: f, profile: JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nodes: Node[]; samples: number[] } }));
const { file, profile } = profiles.sort((a, b) => busy(b.profile) - busy(a.profile))[0] as (typeof profiles)[number];
const total = profile.samples.length;
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const n of profile.nodes) {
  const hits = n.hitCount ?? 0;
  const url = n.callFrame.url.replace(/^.*node_modules\//, '~/').replace(/^file:\/\/.*\/dist\//, '');
  const key = `${n.callFrame.functionName || '(anon)'} ${url}:${n.callFrame.lineNumber}`;
  byFn.set(key, (byFn.get(key) ?? 0) + hits);
  const f = url === '' ? `(${n.callFrame.functionName})` : url.replace(/^(~\/[^/]+(\/[^/]+)?)\/.*$/, '$1');
  byFile.set(f, (byFile.get(f) ?? 0) + hits);
}
const top = (m: Map<string, number>, k: number): string =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, n]) => `${((100 * n) / total).toFixed(1).padStart(5)}%  ${name}`)
    .join('\n');
process.stdout.write(`${total} samples in ${file}\n-- by file\n${top(byFile, 30)}\n-- by function\n${top(byFn, 45)}\n`);
process.exit(0);
