// Dot-stuffing (RFC 5321 4.5.2): the session doubles every leading dot of
// the content; otherwise a line "." would end the message early.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dotStuff } from '../src/smtp/data.js';

/** What the receiving server does: drop one leading dot from every line. */
function unstuff(data: string): string {
  return data
    .split('\r\n')
    .map((l) => (l.startsWith('.') ? l.slice(1) : l))
    .join('\r\n');
}

test('every line that starts with a dot gets one more, the first line included', () => {
  assert.equal(dotStuff('.\r\n'), '..');
  assert.equal(dotStuff('.a\r\nb\r\n.\r\n..c\r\n'), '..a\r\nb\r\n..\r\n...c');
  assert.equal(dotStuff('x.\r\n.y\r\n'), 'x.\r\n..y');
});

test('dots elsewhere and text without dots are untouched', () => {
  assert.equal(dotStuff('a.b\r\nc . d\r\n'), 'a.b\r\nc . d');
  assert.equal(dotStuff('plain\r\n'), 'plain');
});

test('the final CRLF is left to data_end(), which adds its own', () => {
  assert.equal(dotStuff('a\r\n'), 'a');
  assert.equal(dotStuff('a'), 'a');
  assert.equal(dotStuff('a\r\n\r\n'), 'a\r\n');
});

test('no stuffed line is a lone dot, and the server gets the original back', () => {
  const samples = ['.', '..', '.\r\n.\r\n.', 'Subject: x\r\n\r\n.\r\n.hidden\r\n...\r\nend', '\r\n.\r\n'];
  for (const raw of samples) {
    const stuffed = dotStuff(`${raw}\r\n`);
    assert.ok(!stuffed.split('\r\n').includes('.'), JSON.stringify(raw));
    assert.equal(unstuff(stuffed), raw, JSON.stringify(raw));
  }
});
