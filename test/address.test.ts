// Address parsing: what a transactional sender accepts, normalises and refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { domainToASCII } from 'node:url';
import { parseAddress, parseAddressList, type ParseResult } from '../src/mail/address.js';

function ok(input: string): [name: string, address: string][] {
  const r: ParseResult = parseAddressList(input);
  assert.ok(r.ok, `${JSON.stringify(input)} refused: ${r.ok ? '' : r.reason}`);
  return r.value.map((a) => [a.name, a.address]);
}

function refused(input: string): string {
  const r = parseAddressList(input);
  assert.ok(!r.ok, `${JSON.stringify(input)} accepted as ${JSON.stringify(r.ok && r.value)}`);
  return r.reason;
}

test('bare addresses, display names and lists', () => {
  assert.deepEqual(ok('a@example.com'), [['', 'a@example.com']]);
  assert.deepEqual(ok('<a@example.com>'), [['', 'a@example.com']]);
  assert.deepEqual(ok('Ann Example <ann@example.com>'), [['Ann Example', 'ann@example.com']]);
  assert.deepEqual(ok('a@example.com, Bob <b@example.org>,c@example.net'), [
    ['', 'a@example.com'],
    ['Bob', 'b@example.org'],
    ['', 'c@example.net'],
  ]);
  assert.deepEqual(ok(' , a@example.com, '), [['', 'a@example.com']], 'empty items are skipped');
  assert.deepEqual(ok("o'brien+tag@mail.example.co.uk"), [['', "o'brien+tag@mail.example.co.uk"]]);
});

test('quoted display names may hold commas, angle brackets and escaped quotes', () => {
  assert.deepEqual(ok('"Last, First" <b@example.com>, c@example.org'), [
    ['Last, First', 'b@example.com'],
    ['', 'c@example.org'],
  ]);
  assert.deepEqual(ok('"Q \\"the\\" <boss>" <q@example.com>'), [['Q "the" <boss>', 'q@example.com']]);
  assert.deepEqual(ok('Grüße <g@example.com>'), [['Grüße', 'g@example.com']]);
});

test('domains are lower-cased and internationalised domains become punycode', () => {
  assert.deepEqual(ok('User@EXAMPLE.COM'), [['', 'User@example.com']], 'the local part keeps its case');
  assert.deepEqual(ok('user@bücher.de'), [['', 'user@xn--bcher-kva.de']]);
  assert.deepEqual(ok('Jörg <j@MÜNCHEN.example>'), [['Jörg', 'j@xn--mnchen-3ya.example']]);
  const bare = parseAddress('x@bücher.de');
  assert.ok(bare.ok && bare.value === 'x@xn--bcher-kva.de');
});

test('malformed addresses are refused with a reason', () => {
  assert.match(refused(''), /no address given/);
  assert.match(refused('not-an-address'), /not an address/);
  assert.match(refused('a@b@example.com'), /invalid local part/);
  assert.match(refused('a..b@example.com'), /invalid local part/);
  assert.match(refused('.a@example.com'), /invalid local part/);
  assert.match(refused('ü@example.com'), /invalid local part/, 'no SMTPUTF8 local parts');
  assert.match(refused(`${'x'.repeat(65)}@example.com`), /invalid local part/);
  assert.match(refused('a@localhost'), /invalid domain/, 'a single label is not a public domain');
  assert.match(refused('a@-x.example.com'), /invalid domain/);
  assert.match(refused('a@example.com.'), /invalid domain/);
  assert.match(refused('a@exa_mple.com'), /invalid domain/);
  assert.match(refused('a @example.com'), /not an address/);
  assert.match(refused('Ann <a@example.com'), /unbalanced/);
  assert.match(refused('"Ann <a@example.com>'), /unbalanced/);
  assert.match(refused('Ann <a@example.com>>'), /unbalanced/);
});

test('groups, comments and header injection are refused', () => {
  refused('Friends: a@example.com, b@example.com;');
  refused('(comment) a@example.com');
  assert.match(refused('a@example.com\r\nBcc: victim@example.com'), /control character/);
  assert.match(refused('Ann\n <a@example.com>'), /control character/);
  assert.match(refused('a@example.com\u0000'), /control character/);
});

test('a refusal quotes at most 60 characters of the input', () => {
  const reason = refused(`${'y'.repeat(300)}@`);
  assert.ok(reason.length < 120, reason);
});

test('ASCII domains skip the IDNA conversion yet come out exactly as it would give them', () => {
  const domains = ['Example.COM', 'a-b.example', 'mail.1example.com', 'xn--bcher-kva.de', 'x.y.z.example', '1.2.3.4', '0x1.example', 'a.b1'];
  for (const d of domains) {
    const r = parseAddress(`x@${d}`);
    if (r.ok) assert.equal(r.value, `x@${domainToASCII(d.toLowerCase())}`, d);
  }
  assert.deepEqual(ok('a@b.example, C <c@D.example>'), [['', 'a@b.example'], ['C', 'c@d.example']]);
});
