// Top self-time functions of a .cpuprofile (node --cpu-prof), for finding
// what a scenario spends its CPU on:  node dist/bench/top.js file.cpuprofile [n]
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (file === undefined) throw new Error('usage: top.js file.cpuprofile [n]');
const n = Number(process.argv[3] ?? 40);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((x) => [x.id, x]));
const self = new Map<string, number>();
let total = 0;
p.samples.forEach((id, i) => {
  const node = byId.get(id);
  const dt = p.timeDeltas[i] ?? 0;
  total += dt;
  if (node === undefined) return;
  const { functionName, url, lineNumber } = node.callFrame;
  const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '~/').replace(/^file:\/\/.*\/dist\//, '')}:${lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
});
const idle = [...self.entries()].filter(([k]) => k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
process.stdout.write(`total ${(total / 1000).toFixed(0)} ms, busy ${((total - idle) / 1000).toFixed(0)} ms\n`);
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)) {
  process.stdout.write(`${((v / (total - idle)) * 100).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(1).padStart(8)} ms  ${k}\n`);
}
