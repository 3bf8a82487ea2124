// loadConfig: defaults, derived defaults, ranges, and one error for every bad variable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.js';
import { isMailroomError } from '../src/errors.js';

/** The message loadConfig throws for env, or a failure if it accepts it. */
function problems(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(isMailroomError(err) && err.code === 'ECONFIG', String(err));
    return err.message;
  }
  return assert.fail(`accepted ${JSON.stringify(env)}`);
}

test('an empty environment gives the documented defaults and capture mode', () => {
  const c = loadConfig({});
  assert.equal(c.port, 40_700);
  assert.equal(c.host, '127.0.0.1', 'callers are not authenticated: loopback only');
  assert.equal(c.auth.required, false);
  assert.equal(c.metrics, undefined, 'metrics are off');
  assert.equal(c.pool.workers, 5);
  assert.equal(c.smtp.relay, undefined, 'no EMAIL_HOST: embedded capture relay');
  assert.equal(c.smtp.session.tls, 'none', 'the capture relay speaks plain SMTP on loopback');
  assert.equal(c.smtp.session.user, undefined);
  assert.equal(c.mail.captureDir, 'var/mail');
  assert.deepEqual(c.mail.from, { name: '', address: 'mailroom@mailroom.localhost' });
  assert.equal(c.pool.queueLimit, 1_000);
  assert.equal(c.otp.lifespanMs, 120_000);
  assert.equal(c.otp.cleanupMs, 180_000);
  assert.equal(c.otp.length, 6);
  assert.equal(c.otp.returnCode, false);
  assert.deepEqual(c.log, { level: 'info', format: 'json' });
  assert.equal(c.shutdownTimeoutMs, 10_000);
});

test('EMAIL_TLS defaults to implicit on port 465 and to starttls on any other port', () => {
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com' }).smtp.relay?.port, 465);
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com' }).smtp.session.tls, 'implicit');
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_PORT: '587' }).smtp.session.tls, 'starttls');
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_PORT: '25' }).smtp.session.tls, 'starttls');
  assert.equal(loadConfig({ EMAIL_HOST: 'relay.local', EMAIL_PORT: '25', EMAIL_TLS: 'NONE' }).smtp.session.tls, 'none');
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_PORT: '2465', EMAIL_TLS: 'implicit' }).smtp.session.tls, 'implicit');
});

test('EMAIL_PORT defaults from EMAIL_TLS: 587 for starttls, 25 for none, 465 otherwise', () => {
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_TLS: 'starttls' }).smtp.relay?.port, 587);
  assert.equal(loadConfig({ EMAIL_HOST: 'relay.local', EMAIL_TLS: 'none' }).smtp.relay?.port, 25);
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_TLS: 'implicit' }).smtp.relay?.port, 465);
  assert.equal(loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL_TLS: 'starttls', EMAIL_PORT: '2525' }).smtp.relay?.port, 2525);
});

test('EMAIL_FROM defaults to EMAIL; EMAIL and APP_PASSWORD come as a pair', () => {
  const c = loadConfig({ EMAIL_HOST: 'smtp.example.com', EMAIL: 'robot@example.com', APP_PASSWORD: 'pw' });
  assert.deepEqual(c.mail.from, { name: '', address: 'robot@example.com' }, 'parsed once, here');
  assert.equal(c.smtp.session.user, 'robot@example.com');
  assert.equal(c.smtp.session.password, 'pw');
  assert.deepEqual(loadConfig({ EMAIL: 'robot@example.com', APP_PASSWORD: 'pw', EMAIL_FROM: 'Shop <shop@example.com>' }).mail.from, { name: 'Shop', address: 'shop@example.com' });
  assert.match(problems({ EMAIL: 'robot@example.com' }), /EMAIL and APP_PASSWORD: set both/);
  assert.match(problems({ APP_PASSWORD: 'pw' }), /EMAIL and APP_PASSWORD: set both/);
});

test('EMAIL_FROM must be one address, and is checked with everything else', () => {
  const both = problems({ EMAIL_FROM: 'not an address', WORKERS: '0' });
  assert.match(both, /EMAIL_FROM="not an address": expected one address/);
  assert.match(both, /WORKERS="0"/);
  assert.match(problems({ EMAIL_FROM: 'a@example.com, b@example.com' }), /EMAIL_FROM=.*: expected one address/);
  assert.match(problems({ EMAIL_FROM: 'a@example.com\r\nBcc: x@example.com' }), /EMAIL_FROM=.*: expected one address/);
  // Some relays take a user name that is not an address: then EMAIL_FROM is needed.
  assert.match(problems({ EMAIL: 'apikey', APP_PASSWORD: 'pw' }), /EMAIL_FROM \(unset, so EMAIL\)="apikey": expected one address/);
  assert.equal(loadConfig({ EMAIL: 'apikey', APP_PASSWORD: 'pw', EMAIL_FROM: 'shop@example.com' }).mail.from.address, 'shop@example.com');
});

test('seconds become milliseconds; blank values count as unset', () => {
  const c = loadConfig({ SHUTDOWN_TIMEOUT_SECONDS: '1', OTP_LIFESPAN_SECONDS: '60', WORKERS: '  ', PORT: '' });
  assert.equal(c.shutdownTimeoutMs, 1_000);
  assert.equal(c.otp.lifespanMs, 60_000);
  assert.equal(c.pool.workers, 5);
  assert.equal(c.port, 40_700);
});

test('EMAIL_CA_FILE is read at load; an unreadable one is a configuration error', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'mailroom-ca-')), 'ca.pem');
  writeFileSync(file, '-----BEGIN CERTIFICATE-----\n');
  assert.equal(loadConfig({ EMAIL_CA_FILE: file }).smtp.session.ca, '-----BEGIN CERTIFICATE-----\n');
  assert.match(problems({ EMAIL_CA_FILE: '/nonexistent/ca.pem' }), /EMAIL_CA_FILE="\/nonexistent\/ca.pem": expected a readable file/);
});

test('each bad value names the variable and what it accepts', () => {
  assert.match(problems({ WORKERS: 'zero' }), /WORKERS="zero": expected a whole number from 1 to 256/);
  assert.match(problems({ WORKERS: '0' }), /WORKERS="0": expected a whole number from 1 to 256/);
  assert.match(problems({ WORKERS: '-1' }), /WORKERS="-1": expected a whole number from 1 to 256/);
  assert.match(problems({ WORKERS: '2.5' }), /WORKERS="2.5": expected a whole number/);
  assert.match(problems({ PORT: '70000' }), /PORT="70000": expected a whole number from 0 to 65535/);
  assert.match(problems({ PORT: 'abc' }), /PORT="abc": expected a whole number from 0 to 65535/);
  assert.match(problems({ EMAIL_TLS: 'ssl' }), /EMAIL_TLS="ssl": expected one of implicit, starttls, none/);
  assert.match(problems({ LOG_FORMAT: 'xml' }), /LOG_FORMAT="xml": expected one of json, pretty/);
  assert.match(problems({ OTP_RETURN_CODE: 'maybe' }), /OTP_RETURN_CODE="maybe": expected true or false/);
  assert.match(problems({ OTP_SECRET: 'short' }), /OTP_SECRET: expected at least 32 characters/);
  assert.match(problems({ SMTP_BACKOFF_BASE_MS: '5000', SMTP_BACKOFF_MAX_MS: '1000' }), /SMTP_BACKOFF_MAX_MS: expected at least SMTP_BACKOFF_BASE_MS/);
});

test('several bad variables are all reported in one error', () => {
  const message = problems({ WORKERS: 'zero', PORT: '70000', EMAIL_TLS: 'ssl', LOG_LEVEL: 'loud' });
  for (const name of ['WORKERS', 'PORT', 'EMAIL_TLS', 'LOG_LEVEL']) assert.match(message, new RegExp(`^  ${name}=`, 'm'));
});

test('a secret value is never echoed in a problem', () => {
  const message = problems({ OTP_SECRET: 'tooshort-s3cr3t' });
  assert.doesNotMatch(message, /s3cr3t/);
});

test('the configuration is frozen all the way down', () => {
  const c = loadConfig({});
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.smtp) && Object.isFrozen(c.pool) && Object.isFrozen(c.otp.templates));
  assert.throws(() => {
    (c.pool as { workers: number }).workers = 9;
  }, TypeError);
});

test('protected by default: a non-loopback HOST needs authentication or ALLOW_UNAUTHENTICATED; with tokens HOST defaults to 0.0.0.0', () => {
  const message = problems({ HOST: '0.0.0.0' });
  assert.match(message, /HOST="0\.0\.0\.0": callers are not authenticated/);
  assert.match(message, /AUTH_TOKENS_FILE/);
  assert.match(message, /ALLOW_UNAUTHENTICATED=true/);
  assert.equal(loadConfig({ HOST: '0.0.0.0', ALLOW_UNAUTHENTICATED: 'true' }).host, '0.0.0.0');
  for (const host of ['127.0.0.1', '127.8.9.10', '::1', 'localhost']) assert.equal(loadConfig({ HOST: host }).host, host);
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-tokens-'));
  const file = join(dir, 'tokens');
  writeFileSync(file, `# callers\nshop ${'s'.repeat(32)}\nauditor ${'a'.repeat(40)} mail.OtpService\n`);
  const c = loadConfig({ AUTH_TOKENS_FILE: file });
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.auth.required, true);
  assert.deepEqual(c.auth.tokens?.names, ['shop', 'auditor']);
});

test('AUTH_TOKENS_FILE: every bad line is named, never a token; short tokens, unknown services and duplicates are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-tokens-'));
  const file = join(dir, 'tokens');
  const secret = 'x'.repeat(20);
  writeFileSync(file, `shop ${secret}\nother ${'y'.repeat(32)} mail.Nope\ndup ${'z'.repeat(32)}\ndup ${'w'.repeat(32)}\nlonely\n`);
  const message = problems({ AUTH_TOKENS_FILE: file });
  assert.match(message, /line 1: the token of shop has 20 characters; at least 32/);
  assert.match(message, /line 2: unknown service "mail\.Nope"/);
  assert.match(message, /line 4: dup is named twice/);
  assert.match(message, /line 5: expected "name token"/);
  assert.ok(!message.includes(secret), 'no token in the message');
  writeFileSync(file, '# nothing\n\n');
  assert.match(problems({ AUTH_TOKENS_FILE: file }), /no tokens/);
  assert.match(problems({ AUTH_TOKENS_FILE: join(dir, 'missing') }), /AUTH_TOKENS_FILE=.*expected a readable file/);
});

test('gRPC TLS files: both or neither, and client certificates only with TLS', () => {
  assert.match(problems({ GRPC_TLS_CERT_FILE: '/x.pem' }), /GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: set both/);
  assert.match(problems({ GRPC_TLS_CLIENT_CA_FILE: '/ca.pem' }), /GRPC_TLS_CLIENT_CA_FILE: client certificates need TLS/);
  const c = loadConfig({ GRPC_TLS_CERT_FILE: '/c.pem', GRPC_TLS_KEY_FILE: '/k.pem', GRPC_TLS_CLIENT_CA_FILE: '/ca.pem' });
  assert.equal(c.auth.required, true, 'client certificates authenticate');
  assert.equal(c.host, '0.0.0.0');
  assert.equal(loadConfig({ GRPC_TLS_CERT_FILE: '/c.pem', GRPC_TLS_KEY_FILE: '/k.pem' }).auth.required, false, 'server TLS alone authenticates no caller');
});

test('METRICS_PORT turns metrics on (0: the OS picks) on METRICS_HOST, loopback by default', () => {
  assert.deepEqual(loadConfig({ METRICS_PORT: '0' }).metrics, { host: '127.0.0.1', port: 0 });
  assert.deepEqual(loadConfig({ METRICS_PORT: '9464', METRICS_HOST: '0.0.0.0' }).metrics, { host: '0.0.0.0', port: 9464 });
  assert.match(problems({ METRICS_PORT: 'on' }), /METRICS_PORT="on": expected a whole number from 0 to 65535/);
});

test('REDIS_URL: redis://, rediss:// or a socket path, and only with OTP_SECRET (the same on every replica)', () => {
  const secret = { OTP_SECRET: 'x'.repeat(32) };
  assert.deepEqual(loadConfig({ REDIS_URL: 'redis://cache:6379/2', ...secret }).redis, {
    url: 'redis://cache:6379/2',
    sentinels: undefined,
    sentinelName: 'mymaster',
    prefix: 'mailroom:',
    commandTimeoutMs: 2000,
    minReplicas: 0,
  });
  const sentinel = loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, [::1]:26380', REDIS_SENTINEL_NAME: 'main', ...secret }).redis;
  assert.deepEqual(sentinel?.sentinels, [
    { host: '10.0.0.1', port: 26379 },
    { host: '::1', port: 26380 },
  ]);
  assert.equal(sentinel?.sentinelName, 'main');
  assert.equal(sentinel?.minReplicas, 1, 'under Sentinel a write waits for a replica');
  assert.match(problems({ REDIS_SENTINELS: 'a-host', ...secret }), /REDIS_SENTINELS="a-host": expected host:port, comma-separated/);
  assert.equal(loadConfig({ REDIS_URL: 'rediss://cache', REDIS_PREFIX: 'shop:', ...secret }).redis?.prefix, 'shop:');
  assert.equal(loadConfig({ REDIS_URL: '/run/redis/redis.sock', ...secret }).redis?.url, '/run/redis/redis.sock');
  assert.match(problems({ REDIS_URL: 'redis://cache' }), /OTP_SECRET: required with REDIS_URL/);
  assert.match(problems({ REDIS_URL: 'memcached://cache', ...secret }), /REDIS_URL="memcached:\/\/cache": expected redis:\/\/, rediss:\/\/ or the path of a unix socket/);
  assert.equal(loadConfig({}).redis, undefined, 'unset: everything in memory');
});

test('INSPECT_PORT or INSPECT=stately turn inspection on; unset, there is none', () => {
  assert.equal(loadConfig({}).inspect, undefined);
  assert.deepEqual(loadConfig({ INSPECT_PORT: '0' }).inspect, { port: 0, buffer: 10_000, showAddresses: false, maxClients: 8, statelyUrl: undefined });
  assert.deepEqual(loadConfig({ INSPECT: 'stately', INSPECT_BUFFER: '500' }).inspect, { port: undefined, buffer: 500, showAddresses: false, maxClients: 8, statelyUrl: 'ws://localhost:8080' });
  assert.match(problems({ INSPECT: 'yes' }), /INSPECT="yes": expected one of off, stately/);
  assert.match(problems({ INSPECT_PORT: '0', INSPECT_BUFFER: '5' }), /INSPECT_BUFFER="5": expected a whole number from 100 to 1000000/);
});
