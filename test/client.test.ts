// The command-line client as docs/api.md shows it, as a subprocess against
// the real service: replies in proto JSON names, failures with mailroom's
// metadata, exit codes 0 / 1 / 2.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';
import { codeFromMail, eventually, refusingRecipients, sendMail, startSmtp, startService, relayEnv, waitForPool, type SmtpPeer, type RunningService } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/client/cli.js', import.meta.url));

let smtp: SmtpPeer;
let svc: RunningService;

before(async () => {
  smtp = await startSmtp({ extra: refusingRecipients('reject-me@') });
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2' }));
});

after(async () => {
  await svc.close();
  await smtp.close();
});

function client(args: readonly string[], stdin?: string, port = svc.service.port): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args, '--address', `127.0.0.1:${port}`], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
    child.stdin?.end(stdin ?? '');
  });
}

test('send prints the response as JSON with proto JSON names', async () => {
  const { code, stdout, stderr } = await client(['send', '--to', 'a@example.com', '--subject', 'hi', '--body', 'text', '--cc', 'c@example.com']);
  assert.equal(code, 0, stderr);
  const res = JSON.parse(stdout) as { status: string; messageId: string; smtpResponse: string };
  assert.equal(res.status, 'SUCCESS');
  assert.match(res.messageId, /^<.+@example\.com>$/);
  assert.match(res.smtpResponse, /^250/);
  assert.deepEqual(smtp.messages.at(-1)?.to, ['a@example.com', 'c@example.com']);
});

test('the outbox from the client: send --queued [--send-at], status, cancel, watch (one JSON line an event, resumable with --after)', async () => {
  // watch from now: it keeps listening until stopped.
  const watching = watchLines([]);
  await watching.live;
  const later = new Date(Date.now() + 3_600_000).toISOString();
  const queued = await client(['send', '--queued', '--send-at', later, '--to', 'q@example.com', '--subject', 'queued', '--body', 'b']);
  assert.equal(queued.code, 0, queued.stderr);
  const { messageId, state } = JSON.parse(queued.stdout) as { messageId: string; state: string };
  assert.equal(state, 'MESSAGE_STATE_QUEUED');
  const status = await client(['status', messageId]);
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { state: string; nextAttemptAt: string; acceptedAt: string };
  assert.equal(s.state, 'MESSAGE_STATE_QUEUED');
  assert.equal(new Date(s.nextAttemptAt).toISOString(), s.nextAttemptAt, 'timestamps print as RFC 3339');
  assert.ok(Math.abs(Date.parse(s.nextAttemptAt) - Date.parse(later)) < 1000);
  const cancelled = await client(['cancel', messageId]);
  assert.equal(cancelled.code, 0, cancelled.stderr);
  assert.equal((JSON.parse(cancelled.stdout) as { state: string }).state, 'MESSAGE_STATE_CANCELLED');
  const again = await client(['cancel', messageId]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^FAILED_PRECONDITION: .*\n {2}mailroom-error: ECANCEL/);
  const events = await watching.until('MESSAGE_STATE_CANCELLED');
  const mine = events.filter((e) => e.status.messageId === messageId);
  assert.deepEqual(
    mine.map((e) => e.status.state),
    ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_CANCELLED'],
  );
  // Resumed with the cursor of the first event: the second, and nothing before it.
  const resumed = await watchLines(['--after', mine[0]?.cursor ?? '']).until('MESSAGE_STATE_CANCELLED');
  assert.deepEqual(
    resumed.filter((e) => e.status.messageId === messageId).map((e) => e.status.state),
    ['MESSAGE_STATE_CANCELLED'],
  );
  const bad = await client(['watch', '--after', '0']);
  assert.equal(bad.code, 1, 'a cursor WatchMessages did not give is refused');
  assert.match(bad.stderr, /^INVALID_ARGUMENT: after: not a cursor/);
  assert.equal((await client(['send', '--send-at', later, '--to', 'q@example.com', '--subject', 's', '--body', 'b'])).code, 2, '--send-at without --queued');
  assert.equal((await client(['status'])).code, 2, 'status without an id');
});

interface WatchLine {
  readonly cursor: string;
  readonly status: { readonly messageId: string; readonly state: string };
}

/** `mailroom watch` with `args`, read until a line holds `text`, then stopped (^C). */
function watchLines(args: string[]): { live: Promise<void>; until(text: string): Promise<WatchLine[]> } {
  const child = execFile(process.execPath, [CLI, 'watch', ...args, '--address', `127.0.0.1:${svc.service.port}`]);
  let lines = '';
  child.stdout?.on('data', (d: Buffer) => (lines += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  let said = '';
  const live = new Promise<void>((resolve) =>
    child.stderr?.on('data', (d: Buffer) => {
      said += d.toString();
      if (/^watching (from now|after \S+); \^C stops$/m.test(said)) resolve();
    }),
  );
  return {
    live,
    async until(text) {
      // A CLI process starts in well under a second alone, in several on a loaded machine.
      const deadline = Date.now() + 20_000;
      while (!lines.includes(text) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGINT');
      await exited;
      return lines
        .trim()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as WatchLine);
    },
  };
}

test('--body-file and --html-file read files, and - reads standard input', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-cli-'));
  writeFileSync(join(dir, 'page.html'), '<p>from a file</p>');
  const { code, stderr } = await client(['send', '--to', 'f@example.com', '--subject', 'files', '--body-file', '-', '--html-file', join(dir, 'page.html')], 'body from stdin\n');
  assert.equal(code, 0, stderr);
  const sent = await simpleParser(smtp.messages.at(-1)?.raw ?? '');
  assert.equal(sent.text?.trim(), 'body from stdin');
  assert.equal(sent.html, '<p>from a file</p>');
  const both = await client(['send', '--to', 'f@example.com', '--subject', 's', '--body', 'x', '--body-file', '-']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--body and --body-file: give one of them/);
  const missing = await client(['send', '--to', 'f@example.com', '--subject', 's', '--body-file', join(dir, 'nope')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--body-file .*nope: ENOENT/);
});

test('send --attach, --inline, --header and --list-unsubscribe: the files arrive byte for byte with their names', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-cli-parts-'));
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256))]);
  writeFileSync(join(dir, 'Rechnung März.pdf'), pdf);
  writeFileSync(join(dir, 'logo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
  const args = ['send', '--to', 'p@example.com', '--subject', 'parts', '--body', 'b', '--html', '<img src="cid:logo">'];
  args.push('--attach', join(dir, 'Rechnung März.pdf'), '--inline', `logo=${join(dir, 'logo.png')}`);
  args.push('--header', 'X-Campaign: cli', '--list-unsubscribe', 'https://example.com/u?id=1');
  const { code, stderr } = await client(args);
  assert.equal(code, 0, stderr);
  const sent = await simpleParser(smtp.messages.at(-1)?.raw ?? '');
  const pdfPart = sent.attachments.find((a) => a.filename === 'Rechnung März.pdf');
  assert.ok(pdfPart?.content.equals(pdf));
  assert.equal(pdfPart?.contentType, 'application/pdf');
  assert.equal(sent.attachments.find((a) => a.cid === 'logo')?.filename, 'logo.png');
  assert.equal(sent.headers.get('x-campaign'), 'cli');
  assert.match(smtp.messages.at(-1)?.raw ?? '', /^List-Unsubscribe: <https:\/\/example\.com\/u\?id=1>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r$/m);
  for (const [bad, message] of [
    [['--attach', join(dir, 'missing.pdf')], /--attach: cannot read .*missing\.pdf.* \(ENOENT\)/],
    [['--inline', 'no-equals-sign'], /--inline: expected CID=FILE/],
    [['--header', 'no colon'], /--header: expected 'Name: value'/],
  ] as const) {
    const r = await client(['send', '--to', 'p@example.com', '--subject', 's', '--body', 'b', ...bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, message);
  }
});

test('a refused call prints STATUS: details and the error metadata on stderr, and exits 1', async () => {
  const { code, stdout, stderr } = await client(['send', '--to', 'nobody', '--subject', 'hi', '--body', 'text']);
  assert.equal(code, 1);
  assert.equal(stdout, '');
  assert.match(stderr, /^INVALID_ARGUMENT: to: "nobody" is not an address/);
  assert.match(stderr, /\n {2}mailroom-error: EINVALID\n/);
});

test('RESOURCE_EXHAUSTED shows retry-after; a refused recipient shows the SMTP codes', async (t) => {
  // One connection, a relay that holds the message it is given until the test lets it go, room for one in the
  // queue: once one is held and one waits, the CLI's call finds the queue full, however slowly its process starts.
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held = 0;
  const holding = await startSmtp({
    extra: {
      onData(stream, _session, cb) {
        held++;
        stream.resume();
        stream.on('end', () => void released.then(() => cb(null, 'queued')));
      },
    },
  });
  const full = await startService(relayEnv(holding.port, { WORKERS: '1', QUEUE_LIMIT: '1', METRICS_PORT: '0' }));
  t.after(async () => {
    release();
    await full.close();
    await holding.close();
  });
  await waitForPool(full);
  const sent = [sendMail(full, { to: 'q1@example.com', subject: 's', body: 'b' })];
  await eventually(() => held === 1, 10_000, 'the relay holding the first message');
  sent.push(sendMail(full, { to: 'q2@example.com', subject: 's', body: 'b' }));
  await eventually(async () => /^mailroom_queue_depth 1$/m.test(await (await fetch(`http://127.0.0.1:${full.service.metricsPort}/metrics`)).text()), 10_000, 'one message held by the relay and one waiting');
  const refusedForRoom = await client(['send', '--to', 'q3@example.com', '--subject', 's', '--body', 'b'], '', full.service.port);
  release();
  await Promise.all(sent);
  assert.equal(refusedForRoom.code, 1, refusedForRoom.stdout);
  assert.match(refusedForRoom.stderr, /^RESOURCE_EXHAUSTED: /);
  assert.match(refusedForRoom.stderr, /\n {2}mailroom-error: EQUEUEFULL\n {2}retry-after: \d+/);
  const refused = await client(['send', '--to', 'reject-me@example.com', '--subject', 's', '--body', 'b']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /\n {2}smtp-code: 550\n {2}smtp-enhanced-code: 5\.1\.1/);
});

test('validate-code exits 0 for a valid code and 1 for a wrong one', async () => {
  const sent = await client(['send-code', '--email', 'cli-otp@example.com']);
  assert.equal(sent.code, 0, sent.stderr);
  assert.ok('expiresInSeconds' in (JSON.parse(sent.stdout) as object), 'camelCase names');
  const code = await codeFromMail(smtp, 'cli-otp@example.com');
  const wrong = await client(['validate-code', '--email', 'cli-otp@example.com', '--code', code === '000000' ? '111111' : '000000']);
  assert.equal(wrong.code, 1);
  assert.equal((JSON.parse(wrong.stdout) as { isValid: boolean }).isValid, false);
  const right = await client(['validate-code', '--email', 'cli-otp@example.com', '--code', code]);
  assert.equal(right.code, 0, right.stdout);
  assert.equal((JSON.parse(right.stdout) as { isValid: boolean }).isValid, true);
});

test('--repeat with --concurrency is a load loop with a one-line summary', async () => {
  const before = smtp.messages.length;
  const { code, stdout, stderr } = await client(['send', '--to', 'a@example.com', '--subject', 'load', '--body', 'x', '--repeat', '40', '--concurrency', '1']);
  assert.equal(code, 0, stderr);
  const summary = JSON.parse(stdout) as { calls: number; ok: number; errors: Record<string, number>; perSecond: number };
  assert.equal(summary.calls, 40);
  assert.equal(summary.ok, 40);
  assert.deepEqual(summary.errors, {});
  assert.ok(summary.perSecond > 0);
  assert.equal(smtp.messages.length, before + 40);
});

test('usage errors exit 2 with a message naming what was wrong, never a stack trace', async () => {
  const cases: [string[], RegExp][] = [
    [['send', '--to', 'a@example.com', '--subject', 's', '--body', 'b', '--repeat', 'ten'], /^mailroom: --repeat: expected a whole number of at least 1/],
    [['send', '--to', 'a@example.com', '--subject', 's', '--body', 'b', '--concurrency', '0'], /^mailroom: --concurrency: expected a whole number/],
    [['send', '--to', 'a@example.com', '--subject', 's', '--body', 'b', '--deadline-ms', '1.5'], /^mailroom: --deadline-ms: expected a whole number/],
    [['send', '--frobnicate'], /^mailroom: Unknown option '--frobnicate'/],
    [['send', '--to', 'a@example.com'], /^mailroom: missing --subject/],
    [['send', '--to', 'a@example.com', '--subject', 's', '--tls-cert', '/x.pem'], /^mailroom: --tls-cert and --tls-key: give both/],
    [['frobnicate'], /^mailroom: unknown command "frobnicate"/],
    [[], /^mailroom: no command/],
    [['send', '--to', 'a@example.com', '--subject', 's', '--token', 'tok-SECRET-1\rx'], /^mailroom: --token: expected printable ASCII without spaces or line breaks \(the value is not shown\)/],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await client(args);
    assert.equal(code, 2, args.join(' '));
    assert.equal(stdout, '');
    assert.match(stderr, message, args.join(' '));
    assert.match(stderr, /\nusage:/);
    assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    assert.doesNotMatch(stderr, /SECRET/, 'a token is never printed');
  }
  const help = await client(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage:/);
});

test('the suppression list from the client: suppress add, get, list (one JSON line each, masked), remove; a suppressed send fails ESUPPRESSED', async () => {
  const added = await client(['suppress', 'add', 'Cli-Blocked@example.com']);
  assert.equal(added.code, 0, added.stderr);
  assert.equal(JSON.parse(added.stdout).address, 'c***@example.com');
  assert.equal(JSON.parse((await client(['suppress', 'get', 'cli-blocked@example.com'])).stdout).reason, 'SUPPRESSION_REASON_MANUAL');
  const listed = await client(['suppress', 'list']);
  assert.equal(listed.code, 0);
  assert.ok(listed.stdout.trim().split('\n').some((l) => JSON.parse(l).address === 'c***@example.com'));
  const refused = await client(['send', '--to', 'cli-blocked@example.com', '--subject', 's', '--body', 'b']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /ESUPPRESSED/);
  assert.equal((await client(['suppress', 'remove', 'cli-blocked@example.com'])).code, 0);
  assert.equal((await client(['suppress', 'get', 'cli-blocked@example.com'])).code, 1, 'NOT_FOUND once removed');
  assert.equal((await client(['suppress', 'frobnicate', 'x@example.com'])).code, 2);
  assert.equal((await client(['suppress', 'add'])).code, 2);
});
