// The newcomer's path: npm start builds only what changed (twice in a row,
// the second builds nothing), and the client is executable after a build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** `npm start` until it listens; its output, then stopped. */
async function npmStart(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-start-'));
  const child = spawn('npm', ['start'], {
    cwd: ROOT,
    detached: true,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, DOTENV_PATH: '/dev/null', PORT: '0', MAIL_CAPTURE_DIR: join(dir, 'mail'), OUTBOX_PATH: join(dir, 'outbox.db') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const end = Date.now() + 60_000;
  while (!out.includes('"message":"listening"') && Date.now() < end && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  process.kill(-(child.pid as number), 'SIGTERM');
  await exited;
  return out;
}

test('npm start twice in a row: neither rebuilds what npm test just built, and the service starts', async () => {
  for (let i = 0; i < 2; i++) {
    const out = await npmStart();
    assert.match(out, /build: dist\/ is up to date/, out.slice(0, 2000));
    assert.match(out, /"message":"listening"/);
  }
});

test('the client is executable after a build', () => {
  accessSync(join(ROOT, 'dist', 'src', 'client', 'cli.js'), constants.X_OK);
});
