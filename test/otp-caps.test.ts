// The OTP caps belong to callers: one that floods is refused alone, a login
// burst is never refused, and a caller may key buckets to the people behind
// its requests (`mailroom-rate-key`) without that key reaching a log. Callers
// with tokens: callers.test.ts; across replicas: replicas.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { codeFromMail, metadataValue, recordingLogger, relayEnv, sendCode, startService, startSmtp, type RunningService } from './helpers.js';
import { frame, rawCall } from './raw-grpc.js';
import { loadMailProto } from '../src/rpc/proto.js';

async function service(t: { after: (fn: () => Promise<void>) => void }, env: Record<string, string> = {}, log = recordingLogger('debug')) {
  const smtp = await startSmtp();
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '2', ...env }), { log: log.logger });
  t.after(async () => {
    await svc.close();
    await smtp.close();
  });
  return { smtp, svc, log };
}

const CHECK = '/mail.OtpService/ValidateCode';
const checkFrame = (email: string, otpCode: string): Buffer =>
  frame(loadMailProto().mail.OtpService.service.ValidateCode.requestSerialize({ email, otpCode }) as Buffer);

/** ValidateCode with the grpc-js client, with metadata of the caller's. */
function check(svc: RunningService, email: string, code: string, meta: Record<string, string> = {}): Promise<'valid' | 'invalid' | grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(meta)) metadata.set(k, v);
  return new Promise((resolve) =>
    svc.otp.ValidateCode({ email, otpCode: code }, metadata, (err, res) => resolve(err ? err : res?.isValid === true ? 'valid' : 'invalid')),
  );
}

test('defaults: a burst of 1,000 checks from one caller is answered, and of 300 checks of one correct code exactly one wins', async (t) => {
  const { smtp, svc } = await service(t);
  const burst = await Promise.all(Array.from({ length: 1000 }, (_, i) => check(svc, `probe${i}@example.com`, '123456')));
  assert.deepEqual([...new Set(burst)], ['invalid'], 'no RESOURCE_EXHAUSTED');
  await sendCode(svc, 'login@example.com');
  const code = await codeFromMail(smtp, 'login@example.com');
  const results = await Promise.all(Array.from({ length: 300 }, () => check(svc, 'login@example.com', code)));
  assert.equal(results.filter((r) => r === 'valid').length, 1);
  assert.equal(results.filter((r) => r === 'invalid').length, 299);
});

test('without authentication each address is its own caller: a flood from one is refused alone', async (t) => {
  const { svc } = await service(t, { OTP_MAX_CHECKS_PER_SECOND: '5' });
  const address = `127.0.0.1:${svc.service.port}`;
  const attacker = await Promise.all(Array.from({ length: 20 }, () => rawCall(address, CHECK, checkFrame('x@example.com', '000000'), true, {}, '127.0.0.2')));
  const refused = attacker.filter((a) => a.status === grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(attacker.length - refused.length, 5, "the attacker's address got its five a second");
  assert.match(refused[0]?.message ?? '', /by this caller \(OTP_MAX_CHECKS_PER_SECOND\)/);
  // Meanwhile, from another address, every check is answered.
  const victim = await Promise.all(Array.from({ length: 5 }, () => check(svc, 'user@example.com', '123456')));
  assert.deepEqual(victim, ['invalid', 'invalid', 'invalid', 'invalid', 'invalid']);
  const third = await rawCall(address, CHECK, checkFrame('x@example.com', '000000'), true, {}, '127.0.0.3');
  assert.equal(third.status, grpc.status.OK);
});

test('mailroom-rate-key: each key of a caller has its own bucket, the key is never logged, a bad one is refused without echo', async (t) => {
  const { svc, log } = await service(t, { OTP_MAX_CHECKS_PER_KEY_PER_MINUTE: '3', OTP_MAX_SENDS_PER_KEY_PER_HOUR: '2' });
  const key = 'end-user-203.0.113.7';
  const keyed = await Promise.all(Array.from({ length: 5 }, () => check(svc, 'k@example.com', '123456', { 'mailroom-rate-key': key })));
  assert.equal(keyed.filter((r) => r === 'invalid').length, 3);
  const err = keyed.find((r): r is grpc.ServiceError => typeof r !== 'string');
  assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(err?.details ?? '', /for this rate key \(OTP_MAX_CHECKS_PER_KEY_PER_MINUTE\)/);
  assert.ok(Number(metadataValue(err as grpc.ServiceError, 'retry-after')) >= 1);
  // Another key, and no key, are not touched by it.
  assert.equal(await check(svc, 'k@example.com', '123456', { 'mailroom-rate-key': 'end-user-198.51.100.9' }), 'invalid');
  assert.equal(await check(svc, 'k@example.com', '123456'), 'invalid');
  // Sends per key and hour.
  const send = (to: string): Promise<string | number> => {
    const metadata = new grpc.Metadata();
    metadata.set('mailroom-rate-key', key);
    return new Promise((resolve) => svc.otp.SendCode({ email: to }, metadata, (e) => resolve(e ? e.code : 'ok')));
  };
  assert.deepEqual([await send('s1@example.com'), await send('s2@example.com'), await send('s3@example.com')], ['ok', 'ok', grpc.status.RESOURCE_EXHAUSTED]);
  const bad = await check(svc, 'k@example.com', '123456', { 'mailroom-rate-key': `secret-${'z'.repeat(300)}` });
  assert.equal((bad as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT);
  assert.doesNotMatch((bad as grpc.ServiceError).details, /secret-/);
  const everything = log.lines.join('\n');
  assert.ok(!everything.includes(key) && !everything.includes('secret-'), 'no rate key in any log line');
});
