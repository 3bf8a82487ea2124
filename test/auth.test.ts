// SMTP AUTH: refused credentials make the relay unavailable to callers, and
// the password never shows up in a log line or an error a caller sees.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startSmtp, startService, sendMail, expectGrpcError, testPki, recordingLogger, type SmtpPeer, type RunningService } from './helpers.js';

const USER = 'robot@example.com';
const WRONG = 'Wr0ng-Pa55word-zq81x';

const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const peer of open.reverse()) await peer.close();
});

test('a wrong password: UNAVAILABLE, nothing sent, and the password is in no log line and no error', async () => {
  const pki = testPki();
  const smtp: SmtpPeer = await startSmtp({ secure: pki.server, auth: { user: USER, pass: 'the-right-one' } });
  open.push(smtp);
  const logs = recordingLogger();
  const svc: RunningService = await startService(
    {
      EMAIL_HOST: '127.0.0.1',
      EMAIL_PORT: String(smtp.port),
      EMAIL_TLS: 'implicit',
      EMAIL_CA_FILE: pki.caFile,
      EMAIL: USER,
      APP_PASSWORD: WRONG,
      WORKERS: '2',
      SMTP_CONNECT_TIMEOUT_MS: '100',
      SMTP_GREETING_TIMEOUT_MS: '1000', // smtp-server holds its TLS greeting ~100 ms
      // refused credentials wait out the backoff cap before the next try
      SMTP_BACKOFF_BASE_MS: '20',
      SMTP_BACKOFF_MAX_MS: '50',
      QUEUE_TIMEOUT_MS: '300',
    },
    { log: logs.logger },
  );
  open.push(svc);

  const err = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 's', body: 'b' }));
  assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
  assert.equal(smtp.messages.length, 0);
  assert.ok(smtp.authAttempts.length > 0 && smtp.authAttempts.every((a) => !a.ok && a.user === USER && a.secure));
  assert.ok(logs.entries.some((e) => e.code === 'EAUTH' && e.level === 'warn'), 'the failure is logged as EAUTH, above debug');

  // PLAIN sends base64("\0user\0password"); LOGIN sends base64(password).
  const forms = [WRONG, Buffer.from(WRONG).toString('base64'), Buffer.from(`\u0000${USER}\u0000${WRONG}`).toString('base64')];
  const seen = [...logs.lines, err.details, JSON.stringify(err.metadata.getMap())].join('\n');
  for (const form of forms) assert.ok(!seen.includes(form), `"${form}" leaked`);
});

for (const method of ['PLAIN', 'LOGIN', 'CRAM-MD5']) {
  test(`AUTH ${method}, when it is the one the relay offers, gets the mail through`, async () => {
    const pki = testPki();
    const smtp = await startSmtp({ secure: pki.server, auth: { user: USER, pass: 'the-right-one' }, authMethods: [method] });
    open.push(smtp);
    const svc = await startService({
      EMAIL_HOST: '127.0.0.1',
      EMAIL_PORT: String(smtp.port),
      EMAIL_TLS: 'implicit',
      EMAIL_CA_FILE: pki.caFile,
      EMAIL: USER,
      APP_PASSWORD: 'the-right-one',
      WORKERS: '1',
    });
    open.push(svc);
    assert.equal((await sendMail(svc, { to: 'ann@example.com', subject: method, body: 'b' })).status, 'SUCCESS');
    assert.deepEqual(
      smtp.authAttempts.map((a) => [a.method, a.ok]),
      [[method, true]],
    );
  });
}
