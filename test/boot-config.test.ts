// Boot-time configuration of the real process: a bad value stops it with a
// message naming the variable, and a .env file fills in what the environment
// leaves unset. Only bad values are used, so no process gets as far as serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once, spawnService } from './helpers.js';

/** Runs main.js with exactly env (plus PATH); resolves with its exit code and stderr. */
async function run(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawnService(env);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stderr };
}

const BAD: [name: string, value: string, expect: RegExp][] = [
  ['WORKERS', 'zero', /WORKERS="zero": expected a whole number from 1 to 256/],
  ['WORKERS', '0', /WORKERS="0": expected a whole number from 1 to 256/],
  ['WORKERS', '-1', /WORKERS="-1": expected a whole number from 1 to 256/],
  ['PORT', '70000', /PORT="70000": expected a whole number from 0 to 65535/],
  ['PORT', 'abc', /PORT="abc": expected a whole number from 0 to 65535/],
];

for (const [name, value, expect] of BAD) {
  test(`boot stops on ${name}=${value} with a message naming it`, async () => {
    const { code, stderr } = await run({ [name]: value });
    assert.equal(code, 2, stderr);
    assert.match(stderr, /^mailroom: invalid configuration:/);
    assert.match(stderr, expect);
  });
}

test('several bad variables are listed in one message', async () => {
  const { code, stderr } = await run({ WORKERS: 'zero', PORT: '70000', EMAIL_TLS: 'ssl' });
  assert.equal(code, 2, stderr);
  assert.match(stderr, /WORKERS="zero"/);
  assert.match(stderr, /PORT="70000"/);
  assert.match(stderr, /EMAIL_TLS="ssl": expected one of implicit, starttls, none/);
});

test('a DOTENV_PATH that names no file stops boot with exit 2', async () => {
  const missing = join(mkdtempSync(join(tmpdir(), 'mailroom-env-')), 'absent.env');
  const { code, stderr } = await run({ DOTENV_PATH: missing });
  assert.equal(code, 2, stderr);
  assert.match(stderr, new RegExp(`DOTENV_PATH="${missing.replace(/[.]/g, '\\.')}": expected a readable file`));
});

test('DOTENV_PATH names a .env file that is read; the real environment wins over it', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-env-')), 'test.env');
  writeFileSync(file, '# comments and quotes as in any .env\nWORKERS="zero"\nPORT=abc\n');
  const fromFile = await run({ DOTENV_PATH: file });
  assert.equal(fromFile.code, 2, fromFile.stderr);
  assert.match(fromFile.stderr, /WORKERS="zero"/, 'WORKERS came from the file');
  assert.match(fromFile.stderr, /PORT="abc"/, 'PORT came from the file');

  const overridden = await run({ DOTENV_PATH: file, WORKERS: '2' });
  assert.equal(overridden.code, 2, overridden.stderr);
  assert.doesNotMatch(overridden.stderr, /WORKERS/, 'the environment value replaced the file value');
  assert.match(overridden.stderr, /PORT="abc"/);
});

test('a PORT another process holds stops boot with a message naming it, not a stack trace', async () => {
  const holder = createServer();
  holder.listen(0, '127.0.0.1');
  await once(holder, 'listening');
  const port = String((holder.address() as AddressInfo).port);
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-capture-'));
  try {
    const { code, stderr } = await run({ PORT: port, HOST: '127.0.0.1', MAIL_CAPTURE_DIR: dir });
    assert.equal(code, 2, stderr);
    assert.match(stderr, new RegExp(`PORT=${port} on HOST=127\\.0\\.0\\.1: cannot listen \\(.*EADDRINUSE`));
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
  } finally {
    holder.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a MAIL_CAPTURE_DIR that cannot be made stops boot with exit 2 and says why, not a stack trace', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-capture-')), 'a-file');
  writeFileSync(file, 'not a folder');
  const { code, stderr } = await run({ MAIL_CAPTURE_DIR: join(file, 'mail') });
  assert.equal(code, 2, stderr);
  assert.match(stderr, /MAIL_CAPTURE_DIR=".*a-file\/mail": cannot be made \(ENOTDIR/);
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
});
