// OtpService under non-default configuration: a one-second lifetime, 8-digit
// codes, no cooldown, custom templates and the test-only OTP_RETURN_CODE.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';
import { startSmtp, startService, relayEnv, sendCode, validateCode, codeFromMail, type SmtpPeer, type RunningService } from './helpers.js';

let smtp: SmtpPeer;
let svc: RunningService;
/** the service's store, given to it here so that a test can see what is still kept */
const store = new InMemoryOtpStore({ lifespanMs: 1000, maxAttempts: 5, resendCooldownMs: 0, maxSendsPerHour: 10 });
/** the OTP actor's clock: the tests move it past a code's lifetime instead of sleeping */
let now = Date.now();
const later = (ms: number): void => {
  now += ms;
};

before(async () => {
  smtp = await startSmtp();
  svc = await startService(
    relayEnv(smtp.port, {
      WORKERS: '1',
      OTP_LIFESPAN_SECONDS: '1',
      OTP_LENGTH: '8',
      OTP_RESEND_COOLDOWN_SECONDS: '0',
      OTP_RETURN_CODE: 'true',
      OTP_SUBJECT: 'Sign-in code {{ code }}',
      OTP_TEXT: 'Hello,\\n\\nyour code is {{code}}.\\nIt is good for {{seconds}} seconds ({{minutes}} min).',
      OTP_HTML: '<p>Your code: <b>{{code}}</b></p>',
    }),
    { clock: () => now, otpStore: store },
  );
});

after(async () => {
  await svc.close();
  await smtp.close();
});

test('2: OTP_LENGTH sets the number of digits', async () => {
  await sendCode(svc, 'eight@example.com');
  assert.match(await codeFromMail(smtp, 'eight@example.com', 8), /^\d{8}$/);
});

test('6: a new SendCode replaces the live code', async () => {
  await sendCode(svc, 'replace@example.com');
  const old = await codeFromMail(smtp, 'replace@example.com', 8);
  await sendCode(svc, 'replace@example.com');
  const current = await codeFromMail(smtp, 'replace@example.com', 8);
  if (old !== current) assert.equal((await validateCode(svc, 'replace@example.com', old)).isValid, false);
  assert.equal((await validateCode(svc, 'replace@example.com', current)).isValid, true);
});

test('8: templates fill {{code}}, {{seconds}} and {{minutes}}, and a literal \\n in the env is a line break', async () => {
  await sendCode(svc, 'custom@example.com');
  const code = await codeFromMail(smtp, 'custom@example.com', 8);
  const parsed = await simpleParser(smtp.messages.at(-1)!.raw);
  assert.equal(parsed.subject, `Sign-in code ${code}`);
  assert.equal(parsed.text?.trimEnd(), `Hello,\n\nyour code is ${code}.\nIt is good for 1 seconds (1 min).`);
  assert.equal(parsed.html, `<p>Your code: <b>${code}</b></p>`);
});

test('9: an expired code is refused even though no sweep has run', async () => {
  const res = await sendCode(svc, 'expiry@example.com');
  assert.equal(res.expires_in_seconds, 1);
  const code = await codeFromMail(smtp, 'expiry@example.com', 8);
  later(1000);
  assert.ok(store.peek('expiry@example.com') !== undefined, 'still stored: the sweep runs every 180 s');
  const check = await validateCode(svc, 'expiry@example.com', code);
  assert.deepEqual({ ...check }, { status: 'SUCCESS', isValid: false, attempts_remaining: 0 });
});

test('10: OTP_RETURN_CODE=true puts the mailed code in the reply', async () => {
  const res = await sendCode(svc, 'returned@example.com');
  assert.equal(res.otpCode, await codeFromMail(smtp, 'returned@example.com', 8));
  assert.equal(res.resend_after_seconds, 0);
});

test('11: an expired code answers exactly as an unknown address does', async () => {
  await sendCode(svc, 'expired2@example.com');
  const code = await codeFromMail(smtp, 'expired2@example.com', 8);
  later(1000);
  const expired = await validateCode(svc, 'expired2@example.com', code);
  const unknown = await validateCode(svc, 'unknown2@example.com', code);
  assert.deepEqual({ ...expired }, { ...unknown });
});
