// SMTP replies: parsing (RFC 5321 multi-line,
// RFC 3463 enhanced codes) and the classification that drives retries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSmtpReply, formatReply, replyError } from '../src/smtp/reply.js';
import type { SmtpReply } from '../src/errors.js';

test('single-line replies, with and without an enhanced code', () => {
  assert.deepEqual(parseSmtpReply('250 2.0.0 Ok: queued as 4F1A2\r\n'), { code: 250, enhanced: '2.0.0', text: 'Ok: queued as 4F1A2' });
  assert.deepEqual(parseSmtpReply('250 OK'), { code: 250, enhanced: undefined, text: 'OK' });
  // RFC 5321 4.2: the text is optional
  assert.deepEqual(parseSmtpReply('354'), { code: 354, enhanced: undefined, text: '' });
  assert.deepEqual(parseSmtpReply('550\r\n'), { code: 550, enhanced: undefined, text: '' });
  assert.deepEqual(parseSmtpReply('250 2.0.0'), { code: 250, enhanced: '2.0.0', text: '' });
  assert.equal(parseSmtpReply('2500 OK'), undefined, 'a code has three digits');
});

test('multi-line replies: the code of the last line, the first enhanced code, all text joined', () => {
  const raw = '550-5.7.1 Our system has detected an unusual rate of\r\n550-5.7.1 unsolicited mail originating from your IP address.\r\n550 5.7.1 https://support.example.com/mail/?p=UnsolicitedRateLimitError\r\n';
  assert.deepEqual(parseSmtpReply(raw), {
    code: 550,
    enhanced: '5.7.1',
    text: 'Our system has detected an unusual rate of unsolicited mail originating from your IP address. https://support.example.com/mail/?p=UnsolicitedRateLimitError',
  });
  const ehlo = '250-smtp.example.com at your service\n250-SIZE 35882577\n250-STARTTLS\n250 SMTPUTF8';
  assert.deepEqual(parseSmtpReply(ehlo), { code: 250, enhanced: undefined, text: 'smtp.example.com at your service SIZE 35882577 STARTTLS SMTPUTF8' });
});

test('anything that is not a reply parses to undefined; text is capped', () => {
  assert.equal(parseSmtpReply(undefined), undefined);
  assert.equal(parseSmtpReply(550), undefined);
  assert.equal(parseSmtpReply(''), undefined);
  assert.equal(parseSmtpReply('connection reset'), undefined);
  assert.equal(parseSmtpReply(`550 ${'x'.repeat(2000)}`)?.text.length, 500);
});

test('formatReply writes code, enhanced code and text on one line', () => {
  assert.equal(formatReply({ code: 250, enhanced: '2.0.0', text: 'Ok' }), '250 2.0.0 Ok');
  assert.equal(formatReply({ code: 250, enhanced: undefined, text: '' }), '250');
});

const reply = (raw: string): SmtpReply => parseSmtpReply(raw) as SmtpReply;

test('classification: 4xx is transient, 5xx permanent, a refused recipient is the caller input', () => {
  const cases: [raw: string, stage: Parameters<typeof replyError>[1], code: string, transient: boolean][] = [
    ['451 4.3.0 Try again later', 'mail', 'ESMTP_TRANSIENT', true],
    ['421 4.7.0 Too many connections', 'data', 'ESMTP_TRANSIENT', true],
    ['450 4.2.1 Mailbox busy', 'rcpt', 'ESMTP_TRANSIENT', true],
    ['550 5.1.1 No such user', 'rcpt', 'ERECIPIENT', false],
    ['553 5.1.3 Bad recipient address syntax', 'rcpt', 'ERECIPIENT', false],
    ['550 5.7.1 Sender rejected', 'mail', 'ESMTP_PERMANENT', false],
    ['552 5.3.4 Message too big', 'data', 'ESMTP_PERMANENT', false],
    ['554 5.7.1 Spam', 'data', 'ESMTP_PERMANENT', false],
    ['554 No SMTP service here', 'ehlo', 'ESMTP_PERMANENT', false],
  ];
  for (const [raw, stage, code, transient] of cases) {
    const err = replyError(reply(raw), stage);
    assert.equal(err.code, code, `${stage} ${raw}`);
    assert.equal(err.transient, transient, `${stage} ${raw}`);
    assert.deepEqual(err.smtp, reply(raw));
    assert.ok(err.message.includes(formatReply(reply(raw))), 'the message carries the SMTP reply');
  }
});

test('classification of AUTH: refused credentials are EAUTH, a temporary failure is transient', () => {
  for (const raw of ['535 5.7.8 Authentication credentials invalid', '534 5.7.9 Application-specific password required', '530 5.7.0 Authentication required']) {
    assert.equal(replyError(reply(raw), 'auth').code, 'EAUTH', raw);
  }
  assert.equal(replyError(reply('454 4.7.0 Temporary authentication failure'), 'auth').code, 'ESMTP_TRANSIENT');
  assert.equal(replyError(reply('504 5.5.4 Unrecognized authentication type'), 'auth').code, 'ESMTP_PERMANENT');
  assert.equal(replyError(reply('535 5.7.8 nope'), 'mail').code, 'ESMTP_PERMANENT', 'EAUTH only at the auth stage');
});

test('the cause is kept for the log', () => {
  const cause = new Error('the socket said no');
  assert.equal(replyError(reply('550 no'), 'mail', cause).cause, cause);
});
