#!/usr/bin/env node
// Builds dist/ from what changed, and nothing when nothing did: npm start
// and npm test run it first, so that a second start does not wait for a
// rebuild and a build never deletes dist/ under a service running from it.
// Plain JavaScript: it runs before anything is compiled.
//
//   node scripts/build.mjs           build what changed (tsc's incremental build)
//   node scripts/build.mjs --clean   delete dist/ and build it all
//
// It also regenerates the proto's types when proto/mail.proto is newer than
// them, drops compiled files whose source is gone (a deleted test must not
// keep running), and leaves the client's entry executable.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (...p) => join(root, ...p);
const STAMP = at('dist', '.built');
const INPUTS = ['src', 'test', 'bench', 'scripts', 'page', 'proto', 'tsconfig.json', 'package.json', 'package-lock.json'];

/** The newest modification time below `path` (generated files are outputs, not inputs). */
function newest(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let n = s.mtimeMs;
  for (const e of readdirSync(path)) if (e !== 'generated' && e !== 'node_modules') n = Math.max(n, newest(join(path, e)));
  return n;
}

function run(cmd, args) {
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
}

if (process.argv.includes('--clean')) rmSync(at('dist'), { recursive: true, force: true });
const inputs = Math.max(...INPUTS.map((p) => newest(at(p))));
if (existsSync(STAMP) && statSync(STAMP).mtimeMs >= inputs && existsSync(at('src', 'generated', 'mail.ts'))) {
  process.stdout.write('build: dist/ is up to date\n');
  process.exit(0);
}
const started = Date.now();
if (!existsSync(at('src', 'generated', 'mail.ts')) || statSync(at('proto', 'mail.proto')).mtimeMs > statSync(at('src', 'generated', 'mail.ts')).mtimeMs) {
  run('bash', [at('scripts', 'generate-types.sh')]);
}
const tsc = at('node_modules', 'typescript', 'bin', 'tsc');
run(process.execPath, [tsc, '-p', at('tsconfig.json')]);
run(process.execPath, [tsc, '-p', at('page', 'tsconfig.json')]);

// Compiled files whose source is gone.
let dropped = 0;
for (const dir of ['src', 'test', 'bench', 'scripts']) {
  const walk = (d) => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'generated') walk(p);
        continue;
      }
      const m = /^(.*)\.js(\.map)?$/.exec(e.name);
      if (m === null) continue;
      const source = join(root, relative(at('dist'), d), `${m[1]}.ts`);
      if (!existsSync(source)) {
        rmSync(p);
        dropped++;
      }
    }
  };
  walk(at('dist', dir));
}
chmodSync(at('dist', 'src', 'client', 'cli.js'), 0o755);
writeFileSync(STAMP, `${new Date().toISOString()}\n`);
process.stdout.write(`build: done in ${((Date.now() - started) / 1000).toFixed(1)} s${dropped > 0 ? ` (${dropped} stale files dropped)` : ''}\n`);
