// OtpService end to end: a real gRPC client, the service, a real SMTP server
// that captures the code mail. Codes are read from the mail, never from the
// reply. One test (or more) per numbered rule of issue 4.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { simpleParser } from 'mailparser';
import {
  startSmtp,
  startService,
  relayEnv,
  sendCode,
  validateCode,
  expectGrpcError,
  codeFromMail,
  metadataValue,
  eventually,
  type SmtpPeer,
  type RunningService,
} from './helpers.js';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';

let smtp: SmtpPeer;
let svc: RunningService;
/** the service's store, given to it here so that the tests can look at what it keeps */
let store: InMemoryOtpStore;
let slowHeld = false;
let letSlowGo = (): void => undefined;
const slowGate = new Promise<void>((resolve) => (letSlowGo = resolve));

before(async () => {
  smtp = await startSmtp({
    extra: {
      onRcptTo(address, _session, cb) {
        if (address.address.startsWith('refused')) {
          cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
          return;
        }
        // Holds the mail until the test lets it go, so that it can act while the send is in flight.
        if (address.address.startsWith('slow')) {
          slowHeld = true;
          void slowGate.then(() => cb());
        } else cb();
      },
    },
  });
  store = new InMemoryOtpStore({ lifespanMs: 120_000, maxAttempts: 5, resendCooldownMs: 30_000, maxSendsPerHour: 3 });
  // The per-caller caps have tests of their own (below, and otp-caps.test.ts); here they stay out of the way.
  svc = await startService(relayEnv(smtp.port, { WORKERS: '2', OTP_MAX_SENDS_PER_HOUR: '3', OTP_MAX_CHECKS_PER_SECOND: '0', OTP_MAX_SENDS_PER_MINUTE: '0' }), { otpStore: store });
});

after(async () => {
  letSlowGo();
  await svc.close();
  await smtp.close();
});

/** SendCode, then the code as the mail carried it. */
async function issue(address: string): Promise<string> {
  const res = await sendCode(svc, address);
  assert.equal(res.status, 'SUCCESS');
  return codeFromMail(smtp, address);
}

function wrong(code: string): string {
  return code.replace(/\d$/, (d) => String((Number(d) + 1) % 10));
}

test('1: of 300 parallel ValidateCode calls with the right code exactly one is valid', async () => {
  const code = await issue('race@example.com');
  const results = await Promise.all(Array.from({ length: 300 }, () => validateCode(svc, 'race@example.com', code)));
  assert.equal(results.filter((r) => r.isValid).length, 1);
  assert.ok(results.every((r) => r.status === 'SUCCESS'));
});

test('2: a code is 6 random digits and lives OTP_LIFESPAN_SECONDS (default 120)', async () => {
  const res = await sendCode(svc, 'digits@example.com');
  assert.equal(res.expires_in_seconds, 120);
  const code = await codeFromMail(smtp, 'digits@example.com');
  assert.match(code, /^\d{6}$/);
  const codes = new Set<string>();
  for (let i = 0; i < 5; i++) codes.add(await issue(`digits${i}@example.com`));
  assert.ok(codes.size >= 4, 'codes differ from one send to the next');
});

test('3: only a keyed hash is stored; addresses are trimmed and lower-cased alike on send and check', async () => {
  const res = await sendCode(svc, '  Mixed.Case@Example.COM ');
  assert.equal(res.status, 'SUCCESS');
  const mail = smtp.messages.at(-1)!;
  assert.deepEqual(mail.to, ['Mixed.Case@example.com'], 'the mail goes to the address as typed, domain lower-cased');
  const code = await codeFromMail(smtp, 'Mixed.Case@example.com');

  const stored = store.peek('mixed.case@example.com');
  assert.ok(stored !== undefined, 'stored under the normalised address');
  const bytes = Buffer.from(stored.hash, 'latin1');
  assert.equal(bytes.length, 32, 'an HMAC-SHA-256');
  assert.equal(bytes.toString('latin1'), stored.hash, 'one byte per character');
  for (const form of [Buffer.from(code), Buffer.from(code, 'hex'), Buffer.from(String(Number(code)))]) {
    assert.equal(bytes.includes(form), false, 'the code is not in what is stored');
  }
  assert.deepEqual(Object.keys(stored).sort(), ['attemptsLeft', 'expiresAt', 'hash'], 'nothing else is kept');
  assert.equal((await validateCode(svc, 'MIXED.case@example.com', code)).isValid, true);
});

test('4: a correct check consumes the code', async () => {
  const code = await issue('once@example.com');
  assert.equal((await validateCode(svc, 'once@example.com', code)).isValid, true);
  assert.equal((await validateCode(svc, 'once@example.com', code)).isValid, false);
  assert.equal(store.peek('once@example.com'), undefined, 'and it is gone from the store');
});

test('5: five wrong guesses kill the code; the right one is then refused', async () => {
  const code = await issue('guess@example.com');
  const left: number[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await validateCode(svc, 'guess@example.com', wrong(code));
    assert.equal(res.isValid, false);
    left.push(res.attempts_remaining);
  }
  assert.deepEqual(left, [0, 0, 0, 0, 0], 'attempts_remaining tells nothing: a live code and none answer alike');
  assert.equal(store.peek('guess@example.com'), undefined, 'the fifth wrong guess killed it');
  const res = await validateCode(svc, 'guess@example.com', code);
  assert.deepEqual({ ...res }, { status: 'SUCCESS', isValid: false, attempts_remaining: 0 });
  assert.deepEqual({ ...(await validateCode(svc, 'never-sent@example.com', code)) }, { ...res }, 'exactly what an address with no code gets');
});

test('6a: a resend inside the cooldown is RESOURCE_EXHAUSTED with the wait in retry-after', async () => {
  const first = await sendCode(svc, 'cool@example.com');
  assert.equal(first.resend_after_seconds, 30);
  const sent = smtp.messages.length;
  const err = await expectGrpcError(sendCode(svc, 'cool@example.com'));
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
  const wait = Number(metadataValue(err, 'retry-after'));
  assert.ok(wait >= 29 && wait <= 30, `retry-after ${wait}`);
  assert.match(err.details, /retry after \d+ s/);
  assert.equal(smtp.messages.length, sent, 'no second mail');
});

test('6b: once a code is used a new one may be sent at once, without waiting out the cooldown', async () => {
  const code = await issue('reuse@example.com');
  assert.equal((await validateCode(svc, 'reuse@example.com', code)).isValid, true);
  const next = await issue('reuse@example.com');
  assert.equal((await validateCode(svc, 'reuse@example.com', next)).isValid, true);
});

test('6c: at most OTP_MAX_SENDS_PER_HOUR codes per address (3 here)', async () => {
  for (let i = 0; i < 3; i++) {
    const code = await issue('hourly@example.com');
    assert.equal((await validateCode(svc, 'hourly@example.com', code)).isValid, true);
  }
  const err = await expectGrpcError(sendCode(svc, 'HOURLY@example.com'));
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
  const wait = Number(metadataValue(err, 'retry-after'));
  assert.ok(wait > 3500 && wait <= 3600, `retry-after ${wait}`);
});

test('6d: a SendCode while another for the same address is in flight is RESOURCE_EXHAUSTED; the code is not live before its mail is accepted', async () => {
  const first = sendCode(svc, 'slow@example.com');
  await eventually(() => slowHeld, 10_000, 'the relay holding the code mail');
  assert.equal(store.peek('slow@example.com'), undefined, 'not live while the mail is on its way');
  const err = await expectGrpcError(sendCode(svc, 'slow@example.com'));
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(err.details, /being sent/);
  assert.ok(Number(metadataValue(err, 'retry-after')) > 0);
  letSlowGo();
  assert.equal((await first).status, 'SUCCESS');
  assert.ok(store.peek('slow@example.com') !== undefined);
  const code = await codeFromMail(smtp, 'slow@example.com');
  assert.equal((await validateCode(svc, 'slow@example.com', code)).isValid, true);
});

test('7: an SMTP refusal fails SendCode with the relay reply and leaves no live code', async () => {
  const err = await expectGrpcError(sendCode(svc, 'refused@example.com'));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /550/);
  assert.equal(metadataValue(err, 'smtp-code'), '550');
  assert.equal(store.peek('refused@example.com'), undefined);
  for (const guess of ['000000', '123456', '999999']) {
    assert.equal((await validateCode(svc, 'refused@example.com', guess)).isValid, false);
  }
  // No claim is left behind: the next try reaches the relay again instead of "being sent".
  const again = await expectGrpcError(sendCode(svc, 'refused@example.com'));
  assert.equal(again.code, grpc.status.INVALID_ARGUMENT);
});

test('8: the default mail is short and carries the code and its lifetime', async () => {
  await sendCode(svc, 'template@example.com');
  const parsed = await simpleParser(smtp.messages.at(-1)!.raw);
  const code = await codeFromMail(smtp, 'template@example.com');
  assert.equal(parsed.subject, `Your code: ${code}`);
  assert.match(parsed.text ?? '', new RegExp(`Your code is ${code}\\. It expires in 2 minutes\\.`));
  assert.equal(parsed.html, false);
  assert.equal(parsed.from?.value[0]?.address, 'sender@example.com');
});

test('10: otpCode stays empty; expires_in_seconds and resend_after_seconds are filled', async () => {
  const res = await sendCode(svc, 'empty@example.com');
  assert.deepEqual({ ...res }, { status: 'SUCCESS', otpCode: '', expires_in_seconds: 120, resend_after_seconds: 30 });
});

test('11: unknown address and wrong code both answer isValid false with status SUCCESS', async () => {
  const code = await issue('same@example.com');
  const unknown = await validateCode(svc, 'nobody@example.com', code);
  const wrongCode = await validateCode(svc, 'same@example.com', wrong(code));
  assert.equal(unknown.status, 'SUCCESS');
  assert.equal(unknown.isValid, false);
  assert.equal(wrongCode.status, 'SUCCESS');
  assert.equal(wrongCode.isValid, false);
});

test('12: malformed addresses and codes are INVALID_ARGUMENT and change nothing', async () => {
  const code = await issue('strict@example.com');
  const size = store.size;
  const mails = smtp.messages.length;
  const badChecks: [string, string][] = [
    ['strict@example.com', ''],
    ['strict@example.com', code.slice(1)],
    ['strict@example.com', `${code}0`],
    ['strict@example.com', `${code.slice(1)}a`],
    ['strict@example.com', ` ${code.slice(1)}`],
    ['strict@example.com', '１２３４５６'],
    ['not-an-address', code],
    ['', code],
    ['Name <strict@example.com>', code],
    ['strict@example.com\r\nBcc: x@example.com', code],
  ];
  for (const [email, otpCode] of badChecks) {
    const err = await expectGrpcError(validateCode(svc, email, otpCode));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify([email, otpCode])}: ${err.details}`);
  }
  for (const email of ['', 'nope', 'a@b@example.com', 'x@example.com, y@example.com', 'a@example.com\nBcc: b@example.com']) {
    const err = await expectGrpcError(sendCode(svc, email));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(email)}: ${err.details}`);
  }
  assert.equal(store.size, size);
  assert.equal(store.peek('strict@example.com')?.attemptsLeft, 5, 'no attempt was counted');
  assert.equal(smtp.messages.length, mails, 'no mail was sent');
  assert.equal((await validateCode(svc, 'strict@example.com', code)).isValid, true);
});

test('OTP_MAX_CHECKS_PER_SECOND and OTP_MAX_SENDS_PER_MINUTE cap one caller, whatever the address', async (t) => {
  const capped = await startService(relayEnv(smtp.port, { WORKERS: '1', OTP_MAX_CHECKS_PER_SECOND: '5', OTP_MAX_SENDS_PER_MINUTE: '3' }));
  t.after(() => capped.close());
  const checks = await Promise.all(
    Array.from({ length: 20 }, (_, i) => validateCode(capped, `probe${i}@example.com`, '123456').then(() => 'ok', (err: grpc.ServiceError) => err)),
  );
  const refusedChecks = checks.filter((r): r is grpc.ServiceError => r !== 'ok');
  assert.equal(checks.length - refusedChecks.length, 5, 'a second of checks: five');
  for (const err of refusedChecks) {
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(metadataValue(err, 'retry-after'), '1');
    assert.match(err.details, /OTP_MAX_CHECKS_PER_SECOND/);
  }
  const sends = await Promise.all(
    Array.from({ length: 6 }, (_, i) => sendCode(capped, `cap${i}@example.com`).then(() => 'ok', (err: grpc.ServiceError) => err)),
  );
  const refusedSends = sends.filter((r): r is grpc.ServiceError => r !== 'ok');
  assert.equal(sends.length - refusedSends.length, 3, 'a minute of sends: three, to three different addresses');
  for (const err of refusedSends) {
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    const wait = Number(metadataValue(err, 'retry-after'));
    assert.ok(wait >= 1 && wait <= 20, `retry-after ${wait}: the next of three a minute comes within 20 s`);
  }
});
