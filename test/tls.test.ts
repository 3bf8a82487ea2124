// TLS to the relay: implicit TLS and STARTTLS against a throwaway test CA,
// with AUTH, and every way a relay that cannot be trusted must be refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { dial } from '../src/smtp/dial.js';
import { Deliveries } from '../src/smtp/delivery.js';
import { withTlsContext } from '../src/smtp/tls.js';
import {
  startSmtp,
  startService,
  sendMail,
  expectGrpcError,
  testPki,
  recordingLogger,
  type LogRecording,
  type SmtpPeer,
  type RunningService,
  type SmtpPeerOptions,
} from './helpers.js';

const AUTH = { user: 'robot@example.com', pass: 'app-password-123' };

const open: { close(): Promise<void> }[] = [];
after(async () => {
  // services first: their connections QUIT while the relays still listen
  for (const peer of open.reverse()) await peer.close();
});

async function relay(options: SmtpPeerOptions): Promise<SmtpPeer> {
  const smtp = await startSmtp(options);
  open.push(smtp);
  return smtp;
}

async function service(env: Record<string, string>, logs?: LogRecording): Promise<RunningService> {
  const svc = await startService(
    { EMAIL_HOST: '127.0.0.1', EMAIL: AUTH.user, APP_PASSWORD: AUTH.pass, WORKERS: '1', ...env },
    logs === undefined ? {} : { log: logs.logger },
  );
  open.push(svc);
  return svc;
}

/** A relay that cannot be trusted never comes up: keep every wait short. */
const FAST_FAIL = {
  SMTP_CONNECT_TIMEOUT_MS: '100',
  SMTP_GREETING_TIMEOUT_MS: '1000', // smtp-server holds its TLS greeting ~100 ms
  SMTP_BACKOFF_BASE_MS: '20',
  SMTP_BACKOFF_MAX_MS: '100',
  QUEUE_TIMEOUT_MS: '300',
};

test('implicit TLS with AUTH against the test CA: the relay sees the authenticated user', async () => {
  const pki = testPki();
  const smtp = await relay({ secure: pki.server, auth: AUTH });
  const svc = await service({ EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'implicit', EMAIL_CA_FILE: pki.caFile });
  const res = await sendMail(svc, { to: 'ann@example.com', subject: 'over TLS', body: 'secret-free body' });
  assert.equal(res.status, 'SUCCESS');
  const got = smtp.messages.at(-1);
  assert.equal(got?.user, AUTH.user);
  assert.equal(got?.secure, true);
  assert.equal(got?.from, AUTH.user, 'EMAIL_FROM defaults to EMAIL');
  assert.deepEqual(
    smtp.authAttempts.map((a) => [a.user, a.ok, a.secure]),
    [[AUTH.user, true, true]],
  );
});

test('STARTTLS with AUTH: the session is secured before AUTH is sent', async () => {
  const pki = testPki();
  // The relay would take AUTH in plain text: only the client keeps it from happening.
  const smtp = await relay({ starttls: pki.server, auth: AUTH, extra: { allowInsecureAuth: true } });
  const svc = await service({ EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'starttls', EMAIL_CA_FILE: pki.caFile });
  const res = await sendMail(svc, { to: 'ann@example.com', subject: 'upgraded', body: 'b' });
  assert.equal(res.status, 'SUCCESS');
  assert.equal(smtp.authAttempts.length, 1);
  assert.deepEqual(smtp.authAttempts[0], { user: AUTH.user, ok: true, secure: true, method: 'PLAIN' });
  assert.equal(smtp.messages.at(-1)?.secure, true);
  assert.equal(smtp.messages.at(-1)?.user, AUTH.user);
});

/** The call fails UNAVAILABLE, the relay got neither mail nor credentials, and the log says why. */
async function assertRefused(smtp: SmtpPeer, svc: RunningService, logs: LogRecording): Promise<void> {
  const err = await expectGrpcError(sendMail(svc, { to: 'ann@example.com', subject: 'must not go', body: 'b' }));
  assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
  assert.ok(smtp.dials > 0, 'the service did dial the relay');
  assert.equal(smtp.messages.length, 0, 'no message reached the relay');
  assert.equal(smtp.authAttempts.length, 0, 'the credentials never reached the relay');
  assert.ok(
    logs.entries.some((e) => e.code === 'ETLS' && e.level === 'warn'),
    'the refusal is logged as a TLS failure, above debug',
  );
}

test('implicit TLS: a certificate no trusted CA signed is refused', async () => {
  const pki = testPki();
  const smtp = await relay({ secure: pki.untrusted, auth: AUTH });
  const logs = recordingLogger();
  const svc = await service({ ...FAST_FAIL, EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'implicit', EMAIL_CA_FILE: pki.caFile }, logs);
  await assertRefused(smtp, svc, logs);
});

test('implicit TLS: the right certificate is refused without EMAIL_CA_FILE (system CAs only)', async () => {
  const pki = testPki();
  const smtp = await relay({ secure: pki.server, auth: AUTH });
  const logs = recordingLogger();
  const svc = await service({ ...FAST_FAIL, EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'implicit' }, logs);
  await assertRefused(smtp, svc, logs);
});

test('STARTTLS: an untrusted certificate is refused before AUTH', async () => {
  const pki = testPki();
  const smtp = await relay({ starttls: pki.untrusted, auth: AUTH, extra: { allowInsecureAuth: true } });
  const logs = recordingLogger();
  const svc = await service({ ...FAST_FAIL, EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'starttls', EMAIL_CA_FILE: pki.caFile }, logs);
  await assertRefused(smtp, svc, logs);
});

test('STARTTLS: a relay that does not offer STARTTLS gets no plaintext AUTH and no mail', async () => {
  const smtp = await relay({ auth: AUTH, extra: { allowInsecureAuth: true } });
  const logs = recordingLogger();
  const svc = await service({ ...FAST_FAIL, EMAIL_PORT: String(smtp.port), EMAIL_TLS: 'starttls' }, logs);
  await assertRefused(smtp, svc, logs);
});

test('a re-dial resumes the TLS session of the one before (implicit TLS and STARTTLS), and still sends', async () => {
  const pki = testPki();
  for (const mode of ['implicit', 'starttls'] as const) {
    const smtp = await relay(mode === 'implicit' ? { secure: pki.server, auth: AUTH } : { starttls: pki.server, auth: AUTH });
    const options = withTlsContext({
      host: '127.0.0.1',
      port: smtp.port,
      tls: mode,
      ca: readFileSync(pki.caFile, 'utf8'),
      user: AUTH.user,
      password: AUTH.pass,
      heloName: 'localhost',
      connectTimeoutMs: 2000,
      greetingTimeoutMs: 2000,
      commandTimeoutMs: 2000,
      dataTimeoutMs: 2000,
    });
    const first = await dial(options);
    assert.equal(first.resumed, false, `${mode}: the first dial has no session to resume`);
    await new Deliveries(first).submit({ from: AUTH.user, to: ['ann@example.com'] }, 'Subject: one\r\n\r\nfirst\r\n');
    await first.quit();
    const second = await dial(options);
    assert.equal(second.resumed, true, `${mode}: the second dial resumes the first one's session`);
    await new Deliveries(second).submit({ from: AUTH.user, to: ['bob@example.com'] }, 'Subject: two\r\n\r\nsecond\r\n');
    await second.quit();
    assert.deepEqual(
      smtp.messages.map((m) => [m.user, m.secure]),
      [
        [AUTH.user, true],
        [AUTH.user, true],
      ],
    );
  }
});
