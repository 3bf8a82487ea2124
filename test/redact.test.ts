// The inspector's one allow-list: what may leave, and what never does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redact } from '../src/inspect/redact.js';
import { MailroomError } from '../src/errors.js';
import { Sealed } from '../src/otp/sealed.js';

const hidden = { showAddresses: false };

test('secrets never pass, whatever they are called in whatever holds them', () => {
  const value = {
    type: 'JOB',
    password: 'pw-MARKER',
    job: { id: '7', message: { raw: 'Subject: x\r\n\r\nbody-MARKER', envelope: { from: 'shop@example.com', to: ['ann@example.com'] }, messageId: '<m@example.com>' } },
    session: { options: { user: 'login@example.com', password: 'pw-MARKER', ca: 'PEM-MARKER', host: 'relay', port: 465 } },
    checks: [{ key: 'ann@example.com', hash: 'hash-MARKER' }],
    otpCode: '123456',
    content: new Sealed({ subject: 'code-MARKER' }),
    text: 'body-MARKER',
    html: '<p>body-MARKER</p>',
    body: 'body-MARKER',
    templates: { subject: 'Your code: {{code}}' },
    secret: 'secret-MARKER',
    reply: { resolve: () => undefined, code: 250, enhanced: '2.0.0', text: 'queued for ann@example.com' },
  };
  const out = JSON.stringify(redact(value, hidden));
  assert.doesNotMatch(out, /MARKER|123456|\{\{code\}\}|login@/);
  assert.match(out, /"code":250/);
  assert.match(out, /"host":"relay"/);
  assert.match(out, /a\*\*\*@example\.com/);
  assert.doesNotMatch(out, /ann@example\.com/);
});

test('addresses are masked in every string unless INSPECT_SHOW_ADDRESSES; long strings and lists are cut; depth is bounded', () => {
  const err = new MailroomError('ERECIPIENT', 'SMTP rcpt refused: 550 <bob.smith@example.org> unknown');
  assert.deepEqual(redact({ error: err }, hidden), { error: { message: 'SMTP rcpt refused: 550 <b***@example.org> unknown', code: 'ERECIPIENT' } });
  assert.deepEqual(redact({ key: 'bob@example.org' }, { showAddresses: true }), { key: 'bob@example.org' });
  const long = redact({ reason: 'x'.repeat(1000) }, hidden) as { reason: string };
  assert.ok(long.reason.length < 230 && long.reason.endsWith('(800 more)'));
  const list = redact({ jobs: Array.from({ length: 50 }, (_, i) => ({ id: String(i) })) }, hidden) as { jobs: unknown[] };
  assert.equal(list.jobs.length, 21);
  let deep: Record<string, unknown> = { id: 'bottom' };
  for (let i = 0; i < 20; i++) deep = { job: deep };
  assert.ok(JSON.stringify(redact(deep, hidden)).includes('…'));
  assert.deepEqual(redact({ pending: new Map([[1, { otpCode: '1' }]]) }, hidden), { pending: { size: 1 } });
});

test("masking follows an address's structure: every legal local part is hidden but its first character", () => {
  const cases: [string, string][] = [
    ['leak{three}@mask.example', 'l***@mask.example'],
    ['john!leak@mask.example', 'j***@mask.example'],
    ["o'leary@mask.example", 'o***@mask.example'],
    ['leak#evil@mask.example', 'l***@mask.example'],
    ['a|b~c@mask.example', 'a***@mask.example'],
    ['"john doe leak"@mask.example', '"***@mask.example'],
    ['odd@local@mask.example', 'o***@mask.example'],
    ['550 <bob.smith@example.org>: unknown, and "carol x"@example.net too', '550 <b***@example.org>: unknown, and "***@example.net too'],
    ['mailto:dave@example.com', 'm***@example.com'],
    ['no address here, just an @ sign', 'no address here, just an @ sign'],
  ];
  for (const [input, masked] of cases) assert.equal((redact({ reason: input }, hidden) as { reason: string }).reason, masked, input);
  for (const [input] of cases.slice(0, 7)) {
    const out = (redact({ reason: input }, hidden) as { reason: string }).reason;
    const local = input.slice(1, input.lastIndexOf('@'));
    assert.ok(!out.includes(local), `${input} → ${out} keeps none of its local part but the first character`);
  }
});
