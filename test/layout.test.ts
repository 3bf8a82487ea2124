// The source tree's shape: no import cycles (type imports included), no
// import that runs back up from a lower layer to a higher one, nothing in
// src/ that reaches outside it, and the V8 flags every way of starting the
// service must give it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingV8Flags, V8_FLAGS } from '../src/runtime-flags.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SRC = join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

const IMPORT = /^\s*(?:import|export)\s[^;]*?\sfrom\s+'(\.[^']+)'/gm;

/**
 * The layers, highest first: a file may import from its own layer and those
 * below it. entry → boot → rpc/inspect/metrics → actors → otp/smtp/redis →
 * mail/capture → errors and small tools.
 */
const LAYERS: readonly [string, RegExp][] = [
  ['entry', /^(main|run|environment|tracing-setup)\.ts$|^client\//],
  ['boot', /^(boot|config|config-reader|side-ports|serve-grpc)\.ts$/],
  ['service', /^(rpc|inspect|metrics)\//],
  ['actors', /^actors\//],
  ['domain', /^(otp|smtp|redis|outbox|bounce)\//],
  ['mail', /^(mail|capture)\//],
  ['base', /^(errors|log|runtime-flags)\.ts$|^lib\//],
];

function layerOf(file: string): number {
  const i = LAYERS.findIndex(([, pattern]) => pattern.test(file));
  if (i < 0) throw new Error(`${file} is in no layer: add it to LAYERS`);
  return LAYERS.length - i;
}

/** Every relative import of every file in src/: [from, to, whether it imports types only]. */
function imports(): [string, string, boolean][] {
  const out: [string, string, boolean][] = [];
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(import|export)(\s+type)?\s[^;]*?\sfrom\s+'(\.[^']+)'/gm)) {
      const target = resolve(dirname(file), (m[3] as string).replace(/\.js$/, '.ts'));
      out.push([relative(SRC, file), relative(SRC, target), m[2] !== undefined]);
    }
  }
  return out;
}

test('no import cycles in src/', () => {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    const deps = [...text.matchAll(IMPORT)].map((m) => resolve(dirname(file), (m[1] as string).replace(/\.js$/, '.ts'))).filter((d) => !d.includes('/generated/'));
    graph.set(file, deps);
  }
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (file: string): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      cycles.push([...stack.slice(stack.indexOf(file)), file].map((f) => relative(SRC, f)).join(' → '));
      return;
    }
    state.set(file, 'open');
    stack.push(file);
    for (const dep of graph.get(file) ?? []) visit(dep);
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file);
  assert.ok(graph.size > 30, `read ${graph.size} files`);
  assert.deepEqual(cycles, []);
});

test('no import runs back up a layer, and nothing in src/ reaches outside it', () => {
  const upward: string[] = [];
  const outside: string[] = [];
  for (const [from, to] of imports()) {
    if (to.startsWith('..')) {
      outside.push(`${from} → ${to}`);
      continue;
    }
    if (to.startsWith('generated/')) continue;
    if (layerOf(to) > layerOf(from)) upward.push(`${from} (${LAYERS[LAYERS.length - layerOf(from)]?.[0]}) → ${to} (${LAYERS[LAYERS.length - layerOf(to)]?.[0]})`);
  }
  assert.deepEqual(outside, [], 'src/ imports nothing outside itself (the page imports the protocol from src/, not the other way round)');
  assert.deepEqual(upward, []);
});

test('rpc/ and metrics/ know the actors by their types only: they call facades', () => {
  const values = imports().filter(([from, to, typeOnly]) => /^(rpc|metrics)\//.test(from) && to.startsWith('actors/') && !typeOnly);
  assert.deepEqual(values, []);
});

test('npm start and npm test give the service the V8 flags it runs with', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  for (const script of ['start', 'test']) {
    const args = (pkg.scripts[script] as string).split(/\s+/);
    assert.equal(args[0], 'node', `${script} runs node itself`);
    assert.deepEqual(missingV8Flags(args, ''), [], `npm ${script}: ${pkg.scripts[script]}`);
  }
  assert.deepEqual(missingV8Flags(), [], 'this test process has them too (npm test)');
  assert.deepEqual(missingV8Flags([], V8_FLAGS.join(' ')), [], 'NODE_OPTIONS counts');
  assert.deepEqual(missingV8Flags(['--inspect'], ''), [...V8_FLAGS]);
});
