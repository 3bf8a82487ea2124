// Several replicas: two mailroom instances share one real redis-server (no
// persistence) and one relay. A code sent through A checks out once through
// B; concurrent checks across both give one true; wrong checks across both
// kill a code; cooldown and the hourly cap hold across both; an idempotent
// repeat on the other replica sends nothing; Redis going away fails OTP
// calls UNAVAILABLE and health says so, and its return heals everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { check, healthClient } from './ops-clients.js';
import { codeFromMail, eventually, expectGrpcError, relayEnv, sendCode, sendMail, sleep, startService, startSmtp, validateCode, type RunningService, type SmtpPeer } from './helpers.js';
import { startRedis, type RedisServer } from './redis-server.js';

const LENGTH = 8;
let redis: RedisServer;
let smtp: SmtpPeer;
let a: RunningService;
let b: RunningService;

const env = (extra: Record<string, string> = {}): Record<string, string> =>
  relayEnv(smtp.port, {
    WORKERS: '2',
    REDIS_URL: redis.url,
    REDIS_PREFIX: 'test:',
    REDIS_TIMEOUT_MS: '500',
    OTP_SECRET: 'the same secret on every replica, 32+',
    OTP_LENGTH: String(LENGTH),
    OTP_RESEND_COOLDOWN_SECONDS: '0',
    ...extra,
  });

before(async () => {
  redis = await startRedis();
  smtp = await startSmtp({ dataDelayMs: 200 });
  a = await startService(env());
  b = await startService(env());
  // Both replicas' Redis connections are up before the tests begin.
  for (const svc of [a, b]) await eventually(() => svc.service.redis?.ready === true, 4000, 'Redis ready');
});

after(async () => {
  await a.close();
  await b.close();
  await smtp.close();
  await redis.stop();
});

const wrong = (code: string): string => (code[0] === '1' ? '2' : '1') + code.slice(1);

test('a code sent through A checks out once through B', async () => {
  await sendCode(a, 'one@example.com');
  const code = await codeFromMail(smtp, 'one@example.com', LENGTH);
  assert.equal((await validateCode(b, 'one@example.com', code)).isValid, true);
  assert.equal((await validateCode(a, 'one@example.com', code)).isValid, false, 'single use across replicas');
  assert.equal((await validateCode(b, 'one@example.com', code)).isValid, false);
});

test('300 concurrent checks of the right code over A and B, at the default caps: exactly one true, 299 false, none refused', async () => {
  await sendCode(b, 'race@example.com');
  const code = await codeFromMail(smtp, 'race@example.com', LENGTH);
  const results = await Promise.all(Array.from({ length: 300 }, (_, i) => validateCode(i % 2 === 0 ? a : b, 'race@example.com', code)));
  assert.equal(results.filter((r) => r.isValid).length, 1);
  assert.equal(results.filter((r) => !r.isValid).length, 299);
});

test('a Redis that hangs (SIGSTOP): OtpService NOT_SERVING within REDIS_TIMEOUT_MS + 1 s, SERVING again once it answers (SIGCONT)', async () => {
  const health = healthClient(`127.0.0.1:${a.service.port}`);
  try {
    assert.equal(await check(health, 'mail.OtpService'), 'SERVING');
    redis.pause();
    const stopped = Date.now();
    let status = 'SERVING';
    while (status === 'SERVING' && Date.now() - stopped < 3000) {
      await sleep(20);
      status = await check(health, 'mail.OtpService');
    }
    const took = Date.now() - stopped;
    assert.equal(status, 'NOT_SERVING');
    assert.ok(took <= 500 + 1000, `NOT_SERVING after ${took} ms (REDIS_TIMEOUT_MS=500)`);
    assert.equal(await check(health, 'mail.MailService'), 'SERVING', 'mail does not need Redis');
    redis.resume();
    await eventually(async () => (await check(health, 'mail.OtpService')) === 'SERVING', 4000, 'OtpService SERVING');
    assert.equal(await check(health, 'mail.OtpService'), 'SERVING');
    await sendCode(a, 'after-hang@example.com');
    assert.equal((await validateCode(b, 'after-hang@example.com', await codeFromMail(smtp, 'after-hang@example.com', LENGTH))).isValid, true);
  } finally {
    redis.resume();
    health.close();
  }
});

test('five wrong checks spread over A and B kill the code', async () => {
  await sendCode(a, 'guess@example.com');
  const code = await codeFromMail(smtp, 'guess@example.com', LENGTH);
  for (let i = 0; i < 5; i++) assert.equal((await validateCode(i % 2 === 0 ? b : a, 'guess@example.com', wrong(code))).isValid, false);
  assert.equal((await validateCode(a, 'guess@example.com', code)).isValid, false, 'dead after OTP_MAX_ATTEMPTS wrong checks');
});

test('the cooldown and the hourly cap hold across replicas', async (t) => {
  // Replicas of their own with a cooldown and a small hourly cap, on the same Redis.
  const c = await startService(env({ OTP_RESEND_COOLDOWN_SECONDS: '30', OTP_MAX_SENDS_PER_HOUR: '3' }));
  const d = await startService(env({ OTP_RESEND_COOLDOWN_SECONDS: '30', OTP_MAX_SENDS_PER_HOUR: '3' }));
  t.after(async () => {
    await c.close();
    await d.close();
  });
  for (const svc of [c, d]) await eventually(() => svc.service.redis?.ready === true, 4000, 'Redis ready');
  await sendCode(c, 'cool@example.com');
  const cooling = await expectGrpcError(sendCode(d, 'cool@example.com'));
  assert.equal(cooling.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(cooling.details, /moments ago/);
  assert.ok(Number(cooling.metadata.get('retry-after')[0]) >= 29);
  // Used codes allow a new send at once; the fourth in the hour is refused wherever it lands.
  for (const svc of [d, c]) {
    const code = await codeFromMail(smtp, 'cool@example.com', LENGTH);
    assert.equal((await validateCode(svc === c ? d : c, 'cool@example.com', code)).isValid, true);
    await sendCode(svc, 'cool@example.com');
  }
  assert.equal((await validateCode(c, 'cool@example.com', await codeFromMail(smtp, 'cool@example.com', LENGTH))).isValid, true);
  const hourly = await expectGrpcError(sendCode(d, 'cool@example.com'));
  assert.equal(hourly.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(hourly.details, /this hour/);
});

test('an idempotent repeat on the other replica, while the first is under way and after, sends one mail', async () => {
  const before = smtp.messages.length;
  const req = { to: 'order@example.com', subject: 'order 42', body: 'paid', idempotency_key: 'order-42' };
  const [first, repeat] = await Promise.all([sendMail(a, req), sleep(50).then(() => sendMail(b, req))]);
  const later = await sendMail(b, req);
  assert.equal(first.message_id, repeat.message_id);
  assert.equal(first.message_id, later.message_id);
  assert.equal(smtp.messages.length, before + 1, 'one mail');
  const other = await expectGrpcError(sendMail(b, { ...req, body: 'refunded' }));
  assert.equal(other.code, grpc.status.FAILED_PRECONDITION);
});

test('a failed send is forgotten across replicas: the retry on the other one really retries', async (t) => {
  let refusals = 1;
  const picky = await startSmtp({
    extra: {
      onRcptTo(address, _session, cb) {
        if (address.address === 'flaky@example.com' && refusals-- > 0) cb(Object.assign(new Error('5.1.1 not yet'), { responseCode: 550 }));
        else cb();
      },
    },
  });
  const e = await startService({ ...env(), EMAIL_PORT: String(picky.port) });
  const f = await startService({ ...env(), EMAIL_PORT: String(picky.port) });
  t.after(async () => {
    await e.close();
    await f.close();
    await picky.close();
  });
  const req = { to: 'flaky@example.com', subject: 'retry', body: 'b', idempotency_key: 'retry-1' };
  assert.equal((await expectGrpcError(sendMail(e, req))).code, grpc.status.INVALID_ARGUMENT);
  assert.equal((await sendMail(f, req)).status, 'SUCCESS');
  assert.equal(picky.messages.length, 1);
});

test('every key has a time to live, no key name holds an address and no value a code', async () => {
  await sendCode(a, 'scan@example.com');
  const code = await codeFromMail(smtp, 'scan@example.com', LENGTH);
  const client = new Redis(redis.url);
  try {
    const keys = await client.keys('*');
    assert.ok(keys.length > 0);
    for (const key of keys) {
      assert.ok(key.startsWith('test:'), `${key} has the prefix`);
      assert.ok(!key.includes('@') && !key.includes('scan'), `${key} names no address`);
      assert.ok((await client.pttl(key)) > 0, `${key} has a TTL`);
      const type = await client.type(key);
      const values = type === 'hash' ? Object.values(await client.hgetall(key)) : type === 'zset' ? await client.zrange(key, 0, -1) : [await client.get(key)];
      for (const value of values) assert.ok(!String(value).includes(code), `${key} holds no plaintext code`);
    }
  } finally {
    client.disconnect();
  }
});

test('Redis down: OTP calls fail UNAVAILABLE at once and health says NOT_SERVING; SendMail without a key still works; Redis back: all heal', async () => {
  const health = healthClient(`127.0.0.1:${a.service.port}`);
  try {
    assert.equal(await check(health, 'mail.OtpService'), 'SERVING');
    await redis.stop();
    await eventually(async () => (await check(health, 'mail.OtpService')) === 'NOT_SERVING', 4000, 'OtpService NOT_SERVING');
    assert.equal(await check(health, 'mail.OtpService'), 'NOT_SERVING');
    assert.equal(await check(health, 'mail.MailService'), 'SERVING', 'mail does not need Redis');
    for (const call of [() => sendCode(a, 'down@example.com'), () => validateCode(b, 'down@example.com', '12345678'), () => sendMail(a, { to: 'x@example.com', subject: 's', body: 'b', idempotency_key: 'k-down' })]) {
      const t0 = Date.now();
      const err = await expectGrpcError(call());
      assert.equal(err.code, grpc.status.UNAVAILABLE, err.details);
      assert.deepEqual(err.metadata.get('mailroom-error'), ['ESTORE']);
      assert.ok(Date.now() - t0 < 1500, `failed within ${Date.now() - t0} ms`);
    }
    assert.equal((await sendMail(b, { to: 'x@example.com', subject: 'no key', body: 'b' })).status, 'SUCCESS');
    await redis.start();
    // Each replica reconnects on its own backoff (at most 2 s apart); a balancer sends calls to those whose health says SERVING.
    const healthB = healthClient(`127.0.0.1:${b.service.port}`);
    try {
      for (const h of [health, healthB]) await eventually(async () => (await check(h, 'mail.OtpService')) === 'SERVING', 5000, 'OtpService SERVING again');
    } finally {
      healthB.close();
    }
    // The restart lost every code (no persistence): users ask again, and it works.
    await sendCode(a, 'back@example.com');
    assert.equal((await validateCode(b, 'back@example.com', await codeFromMail(smtp, 'back@example.com', LENGTH))).isValid, true);
  } finally {
    health.close();
  }
});

test('the per-key caps are one allowance for every replica: two codes for a rate key through A and B, the third refused on either', async (t) => {
  const c = await startService(env({ OTP_MAX_SENDS_PER_KEY_PER_HOUR: '2' }));
  const d = await startService(env({ OTP_MAX_SENDS_PER_KEY_PER_HOUR: '2' }));
  t.after(async () => {
    await c.close();
    await d.close();
  });
  const keyed = (svc: RunningService, email: string): Promise<unknown> => {
    const m = new grpc.Metadata();
    m.set('mailroom-rate-key', 'end-user-203.0.113.7');
    return new Promise((resolve, reject) => svc.otp.SendCode({ email }, m, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res))));
  };
  await keyed(c, 'key-1@example.com');
  await keyed(d, 'key-2@example.com');
  for (const svc of [c, d]) {
    const err = await expectGrpcError(keyed(svc, `key-3-${svc.service.port}@example.com`));
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, err.details);
    assert.match(err.details, /OTP_MAX_SENDS_PER_KEY_PER_HOUR/);
  }
});
