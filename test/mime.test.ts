// Message text as built for the relay: RFC 2047 headers, folding, transfer
// encodings, all read back with mailparser as a receiving client would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simpleParser } from 'mailparser';
import { buildMime, normaliseNewlines, type MimeInput } from '../src/mail/mime.js';
import { encodeWords, formatDate, mimeParameter } from '../src/mail/header-encoding.js';
import { PLAIN } from '../src/mail/draft.js';

const BASE: MimeInput = {
  ...PLAIN,
  from: { name: 'Shop', address: 'shop@example.com' },
  to: [{ name: '', address: 'ann@example.com' }],
  cc: [],
  replyTo: [],
  subject: 'hello',
  text: 'plain body',
  html: '',
  messageId: '<id.1@example.com>',
  date: new Date(Date.UTC(2026, 10, 27, 22, 49, 51)),
};

/** Header block of a built message, unfolded lines kept as they are. */
function headerLines(raw: string): string[] {
  return raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n');
}

test('a non-ASCII subject is RFC 2047 encoded and round-trips', async () => {
  const subjects = ['Grüße, 你好 🎉', `Über ${'ünïcödé '.repeat(30)}end`, 'emoji at a word edge '.repeat(3) + '😀😀😀😀😀😀😀😀😀😀😀😀'];
  for (const subject of subjects) {
    const raw = buildMime({ ...BASE, subject });
    assert.match(raw, /^Subject: =\?UTF-8\?B\?/m);
    assert.ok(/^[\x00-\x7f]*$/.test(raw), 'the message is plain ASCII on the wire');
    for (const line of headerLines(raw)) assert.ok(line.length <= 76, `header line of ${line.length}: ${line}`);
    const parsed = await simpleParser(raw);
    assert.equal(parsed.subject, subject);
  }
});

test('long ASCII headers fold at spaces under 78 characters and round-trip', async () => {
  const subject = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
  const raw = buildMime({ ...BASE, subject });
  const lines = headerLines(raw);
  const start = lines.findIndex((l) => l.startsWith('Subject: '));
  assert.ok(lines[start + 1]?.startsWith(' '), 'the subject continues on a folded line');
  for (const line of lines) assert.ok(line.length <= 78, `line of ${line.length}`);
  assert.equal((await simpleParser(raw)).subject, subject);
});

test('runs of spaces never leave a folded line of only white space', () => {
  const folded = encodeWords(`${'a'.repeat(70)}  ${'b'.repeat(78)}`, 9);
  for (const line of folded.split('\r\n')) assert.match(line, /\S/);
});

test('an ASCII subject with no space to fold at stays within 998 octets a line', async () => {
  const subject = 'x'.repeat(998);
  const raw = buildMime({ ...BASE, subject });
  for (const line of raw.split('\r\n')) assert.ok(line.length <= 998, `line of ${line.length}`);
  assert.equal((await simpleParser(raw)).subject, subject);
});

test('ASCII short lines go 7bit; non-ASCII and over-long lines go base64 and round-trip', async () => {
  const seven = buildMime(BASE);
  assert.match(seven, /^Content-Transfer-Encoding: 7bit\r$/m);
  assert.match(seven, /^MIME-Version: 1\.0\r$/m);
  assert.match(seven, /^Content-Type: text\/plain; charset=utf-8\r$/m);

  for (const text of ['naïve café ☕', `${'y'.repeat(999)}\r\nshort`]) {
    const raw = buildMime({ ...BASE, text });
    assert.match(raw, /^Content-Transfer-Encoding: base64\r$/m);
    for (const line of raw.split('\r\n')) assert.ok(line.length <= 76 || line.startsWith('Subject') || line.startsWith('Message-ID'));
    assert.equal((await simpleParser(raw)).text?.replace(/\n/g, '\r\n').trimEnd(), text);
  }
});

test('lines that start with a dot are left to dot-stuffing: the MIME text keeps them', async () => {
  const text = '.\r\n..two\r\n.three';
  const raw = buildMime({ ...BASE, text });
  assert.match(raw, /\r\n\.\r\n\.\.two\r\n\.three\r\n$/);
  assert.equal((await simpleParser(raw)).text?.trimEnd(), '.\n..two\n.three');
});

test('html makes a multipart/alternative with text first', async () => {
  const raw = buildMime({ ...BASE, html: '<p>Hi</p>' });
  assert.match(raw, /^Content-Type: multipart\/alternative; boundary="=_mr_[0-9a-f]{24}"\r$/m);
  assert.ok(raw.indexOf('text/plain') < raw.indexOf('text/html'), 'the last part is the preferred one');
  const parsed = await simpleParser(raw);
  assert.equal(parsed.text?.trimEnd(), 'plain body');
  assert.equal(parsed.html, '<p>Hi</p>');
});

test('bare LF and CR become CRLF; dates are RFC 5322 in UTC', () => {
  assert.equal(normaliseNewlines('a\nb\rc\r\nd'), 'a\r\nb\r\nc\r\nd');
  assert.equal(formatDate(BASE.date), 'Fri, 27 Nov 2026 22:49:51 +0000');
  assert.match(buildMime(BASE), /^Date: Fri, 27 Nov 2026 22:49:51 \+0000\r$/m);
});

test('display names: atoms as is, specials quoted, non-ASCII encoded', async () => {
  const raw = buildMime({
    ...BASE,
    to: [
      { name: 'Ann Example', address: 'ann@example.com' },
      { name: 'Last, First', address: 'lf@example.com' },
      { name: 'Jörg "JJ"', address: 'j@example.com' },
    ],
    cc: [{ name: 'Say "hi"', address: 'cc@example.com' }],
  });
  assert.match(raw, /^To: Ann Example <ann@example\.com>,\r\n "Last, First" <lf@example\.com>,\r\n =\?UTF-8\?B\?/m);
  const parsed = await simpleParser(raw);
  const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
  assert.deepEqual(to?.value.map((v) => v.name), ['Ann Example', 'Last, First', 'Jörg "JJ"']);
  const cc = Array.isArray(parsed.cc) ? parsed.cc[0] : parsed.cc;
  assert.equal(cc?.value[0]?.name, 'Say "hi"');
});

test('MIME parameters: short ASCII quoted; long or non-ASCII in RFC 2231 sections of at most 78 columns, never splitting a character', () => {
  assert.equal(mimeParameter('filename', 'a "b".pdf'), 'filename="a \\"b\\".pdf"');
  const long = mimeParameter('filename', `${'€'.repeat(40)}.pdf`);
  const lines = long.split('\r\n');
  assert.ok(lines.length > 1);
  assert.match(lines[0] ?? '', /^filename\*0\*=utf-8''(%E2%82%AC)+;$/);
  for (const [i, line] of lines.entries()) {
    assert.ok(line.length + (i === 0 ? 1 : 0) <= 78, line);
    if (i > 0) assert.match(line, new RegExp(`^ filename\\*${i}\\*=`));
  }
  const legacy = mimeParameter('name', 'é.pdf', true);
  assert.match(legacy, /^name="=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?="$/);
});
