// Pure parts of delivery reports: return-path tokens and the report parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BounceKeys, ReturnPaths } from '../src/bounce/return-path.js';
import { fieldBlocks, parseReport } from '../src/bounce/report.js';

const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../../test/fixtures/reports/${name}`, import.meta.url)), 'utf8');

test('a token names its key only under the key that minted it, in its one spelling', () => {
  const keys = new BounceKeys(Buffer.alloc(32, 1));
  const other = new BounceKeys(Buffer.alloc(32, 2));
  const key = keys.keyOf('<a@example.com>');
  const token = keys.token(key);
  assert.match(token, /^[a-z2-7]{26}$/);
  assert.equal(keys.open(token), key);
  assert.equal(keys.open(token.toUpperCase()), key, 'an MTA that upper-cases the local part');
  assert.equal(other.open(token), undefined);
  const last = 'abcdefghijklmnopqrstuvwxyz234567'.indexOf(token[25] as string);
  assert.equal(keys.open(`${token.slice(0, 25)}${'abcdefghijklmnopqrstuvwxyz234567'[last | 1]}`), undefined, 'spare bits set');
  assert.equal(keys.open(token.slice(1)), undefined);
  assert.equal(keys.open(`${token.slice(0, 25)}!`), undefined);
  const paths = new ReturnPaths('bounces.example.com');
  assert.equal(paths.sender('<a@example.com>', 'from@example.com'), 'from@example.com', 'no keys yet: EMAIL_FROM');
  paths.use(keys);
  const sender = paths.sender('<a@example.com>', 'from@example.com');
  assert.equal(sender, `b+${token}@bounces.example.com`);
  assert.equal(paths.keyOfAddress(sender), key);
  assert.deepEqual(paths.pathOf({ messageId: '<a@example.com>', envelope: { from: sender, to: ['X@Example.com'] }, raw: '' }), { key, recipients: [keys.digest('x@example.com')] });
});

test('RFC 3464 fields: folded lines unfolded, a block per recipient', () => {
  const blocks = fieldBlocks('Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; x@y\r\nDiagnostic-Code: smtp; 550 no\r\n  such user\r\nAction: failed\r\n');
  assert.equal(blocks.length, 2);
  assert.equal(blocks[1]?.get('diagnostic-code'), 'smtp; 550 no such user');
});

test('the parser reads DSNs (failed, delayed, delivered) and ARF (abuse; not-spam is no complaint)', async () => {
  const dsn = (action: string, status: string): string =>
    `To: b@x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; m\r\n\r\nOriginal-Recipient: rfc822; orig@example.com\r\nFinal-Recipient: rfc822; <final@example.com>\r\nAction: ${action}\r\nStatus: ${status}\r\n\r\n--b--\r\n`;
  assert.deepEqual((await parseReport(dsn('failed', '5.1.1')))?.recipients, [{ address: 'orig@example.com', kind: 'hard', status: '5.1.1', diagnostic: '' }]);
  assert.equal((await parseReport(dsn('failed', '4.4.7')))?.recipients[0]?.kind, 'soft');
  assert.equal((await parseReport(dsn('delayed', '4.4.1')))?.recipients[0]?.kind, 'soft');
  assert.deepEqual((await parseReport(dsn('delivered', '2.0.0')))?.recipients, []);
  const arf = await parseReport(fixture('rfc5965-sample.eml').replaceAll('{{RETURN_PATH}}', 'b+t@b.example').replaceAll('{{RECIPIENT}}', 'r@example.com'));
  assert.deepEqual(arf, { type: 'feedback-report', recipients: [{ address: 'r@example.com', kind: 'complaint', status: '', diagnostic: 'feedback: abuse' }], returnPaths: ['b+t@b.example'] });
  const notSpam = await parseReport(fixture('rfc5965-sample.eml').replace('Feedback-Type: abuse', 'Feedback-Type: not-spam'));
  assert.deepEqual(notSpam?.recipients, []);
  assert.equal(await parseReport('From: a@b\r\nSubject: hi\r\n\r\nhello\r\n'), undefined);
});
