// The command-line client as the README shows it, against the real service.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startSmtp, startService, relayEnv, type SmtpPeer, type RunningService } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/client/cli.js', import.meta.url));

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp();
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

function client(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--address', `127.0.0.1:${svc.service.port}`], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

test('send prints the response as JSON', async () => {
  const { code, stdout, stderr } = await client('send', '--to', 'a@example.com', '--subject', 'hi', '--body', 'text', '--cc', 'c@example.com');
  assert.equal(code, 0, stderr);
  const res = JSON.parse(stdout) as { status: string; message_id: string; smtp_response: string };
  assert.equal(res.status, 'SUCCESS');
  assert.match(res.message_id, /^<.+@example\.com>$/);
  assert.deepEqual(smtp.messages.at(-1)?.to, ['a@example.com', 'c@example.com']);
});

test('a refused call prints STATUS: details on stderr and exits 1', async () => {
  const { code, stdout, stderr } = await client('send', '--to', 'nobody', '--subject', 'hi', '--body', 'text');
  assert.equal(code, 1);
  assert.equal(stdout, '');
  assert.match(stderr, /^INVALID_ARGUMENT: to: "nobody" is not an address/);
});

test('--repeat with --concurrency is a load loop with a one-line summary', async () => {
  const before = smtp.messages.length;
  const { code, stdout, stderr } = await client('send', '--to', 'a@example.com', '--subject', 'load', '--body', 'x', '--repeat', '40', '--concurrency', '8');
  assert.equal(code, 0, stderr);
  const summary = JSON.parse(stdout) as { calls: number; ok: number; errors: Record<string, number>; perSecond: number };
  assert.equal(summary.calls, 40);
  assert.equal(summary.ok, 40);
  assert.deepEqual(summary.errors, {});
  assert.ok(summary.perSecond > 0);
  assert.equal(smtp.messages.length, before + 40);
});

test('a count that is not a whole number is a usage error, not a loop of NaN calls', async () => {
  for (const [option, value] of [['--repeat', 'ten'], ['--concurrency', '0'], ['--deadline-ms', '1.5']] as const) {
    const { code, stdout, stderr } = await client('send', '--to', 'a@example.com', '--subject', 's', '--body', 'b', option, value);
    assert.equal(code, 1, `${option} ${value}`);
    assert.equal(stdout, '');
    assert.match(stderr, new RegExp(`^${option}: expected a whole number of at least 1`));
  }
});

test('an unknown or malformed option is a usage error, not a stack trace', async () => {
  for (const args of [['send', '--frobnicate'], ['send', '--deadline-ms', '-5']]) {
    const { code, stderr } = await client(...args);
    assert.equal(code, 1, args.join(' '));
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    assert.match(stderr, /\nusage:/);
  }
});

test('no command prints the usage and exits 1', async () => {
  const { code, stdout } = await client();
  assert.equal(code, 1);
  assert.match(stdout, /^usage:/);
});
