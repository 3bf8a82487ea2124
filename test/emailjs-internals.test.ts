// pooled-connection.ts reaches into emailjs: protected fields it reads and
// writes, methods it calls or overrides, and SMTPResponseMonitor. emailjs is
// pinned to one version; this test fails when an upgrade takes any of them
// away, before a relay does in production.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { SMTPConnection, SMTPError, SMTPErrorStates, SMTPResponseMonitor } from 'emailjs';
import { PooledConnection } from '../src/smtp/pooled-connection.js';
import { startSmtp } from './helpers.js';

const PINNED = '5.0.3';

test('emailjs is pinned to one version, and that version is the one installed', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  assert.equal(pkg.dependencies.emailjs, PINNED, 'an exact version, not a range');
  const installed = JSON.parse(readFileSync(new URL('../../node_modules/emailjs/package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(installed.version, PINNED);
});

test('every emailjs method pooled-connection.ts and dial.ts use is there', () => {
  for (const method of ['connect', 'send', 'command', 'ehlo', 'login', 'has_extn', 'close'] as const) {
    assert.equal(typeof SMTPConnection.prototype[method], 'function', `SMTPConnection.prototype.${method}`);
  }
  assert.equal(typeof SMTPError.create, 'function');
  assert.equal(typeof SMTPErrorStates.BADRESPONSE, 'number');
  const monitor = new SMTPResponseMonitor(new Socket(), 0, () => undefined);
  assert.equal(typeof monitor.stop, 'function', 'SMTPResponseMonitor(stream, timeout, onerror) with stop()');
  monitor.stop();
});

test('the protected fields it reads and writes hold what it expects, through a real handshake', async () => {
  const smtp = await startSmtp();
  try {
    const conn = new PooledConnection({ host: '127.0.0.1', port: smtp.port, ssl: false, tls: false, domain: 'test.local' });
    const internal = conn as unknown as Record<'sock' | 'monitor' | 'features' | '_secure', unknown>;
    const field = (name: keyof typeof internal): unknown => internal[name];
    assert.equal(field('sock'), null, 'sock: null before connect');
    assert.equal(field('monitor'), null, 'monitor: null before connect');
    await new Promise<void>((resolve, reject) => conn.connect((err) => (err ? reject(err) : resolve())));
    assert.ok(field('sock') instanceof Socket, 'sock: the socket once connected');
    assert.equal(conn.socket(), field('sock'));
    assert.ok(field('monitor') instanceof SMTPResponseMonitor, 'monitor: emailjs reads replies through it');
    assert.equal(field('_secure'), false, '_secure: a boolean the STARTTLS upgrade sets');
    await new Promise<void>((resolve, reject) => conn.ehlo((err) => (err ? reject(err) : resolve())));
    assert.equal(typeof field('features'), 'object', 'features: what EHLO offered, which has_extn reads');
    assert.equal(conn.has_extn('pipelining'), true, 'the test relay offers PIPELINING');
    const sock = conn.release();
    assert.equal(sock, field('sock'), 'release hands over the socket');
    assert.equal(field('monitor'), null, 'and emailjs stops reading it');
    conn.close(true);
    assert.equal(field('sock'), null, 'close(true) forgets the socket');
  } finally {
    await smtp.close();
  }
});
