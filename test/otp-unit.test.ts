// The OTP pieces without gRPC: store (sweep cost, limits), actor with an
// injected clock and mailer, codes, templates and their configuration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createActor } from 'xstate';
import { createLogger } from '../src/log.js';
import { loadConfig } from '../src/config.js';
import { MailroomError } from '../src/errors.js';
import { otpMachine, SWEEP_SLICE, type CodeMailer, type OtpActor, type OtpOptions } from '../src/actors/otp.js';
import type { CodeSent } from '../src/otp/requests.js';
import { withResolvers } from '../src/lib/resolvers.js';
import { CodeHasher, generateCode } from '../src/otp/code.js';
import { InMemoryOtpStore } from '../src/otp/memory-store.js';
import { CODE_ACCEPTED } from '../src/otp/store.js';
import { normaliseOtpAddress } from '../src/otp/address.js';
import { renderCodeMail } from '../src/otp/template.js';
import type { Draft } from '../src/mail/draft.js';
import { eventually } from './helpers.js';

const LIMITS = { lifespanMs: 120_000, maxAttempts: 5, resendCooldownMs: 30_000, maxSendsPerHour: 10 };
const hasher = new CodeHasher(undefined);

const NO_MAIL: CodeMailer = { send: () => assert.fail('no mail expected') };

/** An OTP actor over `store` with test defaults; `options` and `now` override them. */
function startOtp(store: InMemoryOtpStore, over: { options?: Partial<OtpOptions>; mailer?: CodeMailer; now?: () => number } = {}) {
  return createActor(otpMachine, {
    input: {
      options: {
        length: 6,
        lifespanMs: LIMITS.lifespanMs,
        resendCooldownMs: 0,
        cleanupMs: 3_600_000,
        returnCode: false,
        templates: { subject: '', text: '{{code}}', html: '' },
        ...over.options,
      },
      store,
      hasher,
      mailer: over.mailer ?? NO_MAIL,
      log: createLogger({ level: 'error', format: 'json', silent: true }),
      ...(over.now !== undefined ? { now: over.now } : {}),
    },
  }).start();
}

/** A SendCode through the actor's mailbox: undefined when the code went out, else the error. */
async function sendCode(actor: OtpActor, key: string): Promise<MailroomError | undefined> {
  const { reply, answer } = withResolvers<CodeSent>();
  actor.send({ type: 'code.send', key, to: { name: '', address: key }, deadline: Infinity, owner: 'test', reply });
  return answer.then(
    () => undefined,
    (err: MailroomError) => err,
  );
}

/** One ValidateCode through the actor's mailbox: CODE_ACCEPTED or the attempts left. */
async function checkCode(actor: OtpActor, key: string, code: string): Promise<number> {
  const { reply, answer } = withResolvers<number[]>();
  actor.send({ type: 'code.checks', checks: [{ key, hash: hasher.hash(key, code) }], reply });
  return (await answer)[0] as number;
}

test('9: a sweep over 100,000 live codes and 10 expired ones examines about 10 entries', () => {
  const store = new InMemoryOtpStore(LIMITS);
  const t0 = 1_700_000_000_000;
  for (let i = 0; i < 10; i++) {
    assert.equal(store.reserve(`old${i}@example.com`, t0).ok, true);
    store.commit(`old${i}@example.com`, hasher.hash(`old${i}@example.com`, '123456'), t0);
  }
  const later = t0 + 60_000;
  for (let i = 0; i < 100_000; i++) {
    store.reserve(`u${i}@example.com`, later);
    store.commit(`u${i}@example.com`, hasher.hash(`u${i}@example.com`, '123456'), later);
  }
  assert.equal(store.size, 100_010);
  const { removed, examined } = store.sweep(t0 + LIMITS.lifespanMs);
  assert.equal(removed, 10);
  // 10 removed + the first live code + the first send window still in its hour
  assert.ok(examined <= 12, `examined ${examined}`);
  assert.equal(store.size, 100_000);
});

test('store: a replaced code moves to the back of the expiry order', () => {
  const store = new InMemoryOtpStore({ ...LIMITS, resendCooldownMs: 0 });
  store.reserve('a@x.org', 0);
  store.commit('a@x.org', hasher.hash('a@x.org', '1'), 0);
  store.reserve('b@x.org', 1000);
  store.commit('b@x.org', hasher.hash('b@x.org', '1'), 1000);
  store.reserve('a@x.org', 2000);
  store.commit('a@x.org', hasher.hash('a@x.org', '2'), 2000);
  assert.deepEqual(store.sweep(1000 + LIMITS.lifespanMs), { removed: 1, examined: 3 });
  assert.equal(store.peek('b@x.org'), undefined);
  assert.ok(store.peek('a@x.org') !== undefined);
});

test('store: a refused mail keeps its place in the hourly budget, an outage gives it back', () => {
  const store = new InMemoryOtpStore({ ...LIMITS, maxSendsPerHour: 1 });
  assert.equal(store.reserve('a@x.org', 0).ok, true);
  assert.deepEqual(store.reserve('a@x.org', 0), { ok: false, reason: 'pending', retryAfterMs: 30_000 });
  store.release('a@x.org', true);
  assert.equal(store.reserve('a@x.org', 1).ok, true);
  store.release('a@x.org', false);
  assert.deepEqual(store.reserve('a@x.org', 2), { ok: false, reason: 'hourly', retryAfterMs: 3_600_000 - 1 });
});

test('store: the hourly budget counts every send in a sliding hour and forgets each one after it', () => {
  const HOUR = 3_600_000;
  const store = new InMemoryOtpStore({ ...LIMITS, resendCooldownMs: 0, maxSendsPerHour: 3 });
  for (const t of [0, 1000, 2000]) {
    assert.equal(store.reserve('a@x.org', t).ok, true);
    store.commit('a@x.org', hasher.hash('a@x.org', String(t)), t);
  }
  assert.deepEqual(store.reserve('a@x.org', 3000), { ok: false, reason: 'hourly', retryAfterMs: HOUR - 3000 });
  assert.equal(store.reserve('a@x.org', HOUR).ok, true, 'the first send left the hour');
  store.release('a@x.org', true);
  assert.equal(store.reserve('a@x.org', HOUR + 1).ok, true, 'a refunded send gave its place back');
  store.release('a@x.org', false);
  assert.deepEqual(store.reserve('a@x.org', HOUR + 2), { ok: false, reason: 'hourly', retryAfterMs: 1000 + HOUR - (HOUR + 2) });
  // Once the code and every send are gone, the address starts afresh.
  const later = HOUR + 1 + HOUR;
  store.sweep(later);
  assert.equal(store.size, 0);
  assert.equal(store.peek('a@x.org'), undefined);
  for (let i = 0; i < 3; i++) {
    assert.equal(store.reserve('a@x.org', later + i).ok, true, `send ${i}`);
    store.release('a@x.org', false);
  }
});

test('store: addresses keep their own codes while slots are reused and the store grows', () => {
  const store = new InMemoryOtpStore({ ...LIMITS, resendCooldownMs: 0 });
  const HOUR = 3_600_000;
  const issue = (n: number, prefix: string, t: number): void => {
    for (let i = 0; i < n; i++) {
      const key = `${prefix}${i}@x.org`;
      assert.equal(store.reserve(key, t).ok, true);
      store.commit(key, hasher.hash(key, String(i).padStart(6, '0')), t);
    }
  };
  issue(3000, 'a', 0);
  for (let i = 0; i < 3000; i += 2) assert.equal(store.check(`a${i}@x.org`, hasher.hash(`a${i}@x.org`, String(i).padStart(6, '0')), 1), CODE_ACCEPTED);
  assert.equal(store.size, 1500);
  const t = HOUR + LIMITS.lifespanMs;
  assert.equal(store.sweep(t).removed, 1500 + 3000, 'the codes left, then the send records');
  assert.equal(store.size, 0);
  issue(5000, 'b', t);
  assert.equal(store.size, 5000);
  for (let i = 0; i < 5000; i++) {
    const key = `b${i}@x.org`;
    assert.equal(store.check(key, hasher.hash(key, String(i + 1).padStart(6, '0')), t + 1), LIMITS.maxAttempts - 1, key);
    assert.equal(store.check(key, hasher.hash(key, String(i).padStart(6, '0')), t + 1), CODE_ACCEPTED, key);
  }
  assert.equal(store.check('a1@x.org', hasher.hash('a1@x.org', '000001'), t + 1), 0, 'swept');
});

test('store: a code killed by wrong checks may be replaced at once', () => {
  const store = new InMemoryOtpStore({ ...LIMITS, maxAttempts: 2 });
  store.reserve('a@x.org', 0);
  store.commit('a@x.org', hasher.hash('a@x.org', '111111'), 0);
  assert.deepEqual(store.reserve('a@x.org', 1).ok, false, 'cooldown while live');
  const wrongHash = hasher.hash('a@x.org', '222222');
  assert.equal(store.check('a@x.org', wrongHash, 2), 1);
  assert.equal(store.check('a@x.org', wrongHash, 3), 0);
  assert.equal(store.check('a@x.org', hasher.hash('a@x.org', '111111'), 4), 0, 'dead');
  assert.equal(store.reserve('a@x.org', 5).ok, true);
});

test('store: an expired code is refused at check time and removed', () => {
  const store = new InMemoryOtpStore(LIMITS);
  store.reserve('a@x.org', 0);
  const hash = hasher.hash('a@x.org', '123456');
  store.commit('a@x.org', hash, 0);
  assert.equal(store.check('a@x.org', hash, LIMITS.lifespanMs), 0);
  assert.equal(store.size, 0);
});

test('actor: sends become live on acceptance, sweeps remove expired codes, failures release the claim', async () => {
  let now = 1_000_000;
  const drafts: Draft[] = [];
  let failNext: MailroomError | undefined;
  const mailer: CodeMailer = {
    send(draft) {
      drafts.push(draft);
      const error = failNext;
      failNext = undefined;
      return {
        result: error === undefined ? Promise.resolve({ messageId: '<m@x>', reply: { code: 250, enhanced: undefined, text: 'ok' }, attempts: 1 }) : Promise.reject(error),
        cancel: () => undefined,
      };
    },
  };
  const store = new InMemoryOtpStore(LIMITS);
  const actor = startOtp(store, {
    options: { resendCooldownMs: LIMITS.resendCooldownMs, templates: { subject: 'c {{code}}', text: '{{code}}', html: '' } },
    mailer,
    now: () => now,
  });
  const send = (key: string) => sendCode(actor, key);
  const check = (key: string, code: string) => checkCode(actor, key, code);

  assert.equal(await send('a@x.org'), undefined);
  const code = drafts[0]!.text;
  assert.match(code, /^\d{6}$/);
  failNext = new MailroomError('EUNAVAILABLE', 'relay down');
  assert.equal((await send('b@x.org'))?.code, 'EUNAVAILABLE');
  assert.equal(store.peek('b@x.org'), undefined);
  assert.equal(await send('b@x.org'), undefined, 'the failed send left no claim behind');
  assert.equal(store.size, 2);

  // A resend whose mail fails leaves the earlier code valid.
  now += LIMITS.resendCooldownMs;
  const before = drafts.length;
  failNext = new MailroomError('ECONNECTION', 'relay gone');
  assert.equal((await send('a@x.org'))?.code, 'ECONNECTION');
  assert.equal(drafts.length, before + 1);
  assert.ok(store.peek('a@x.org') !== undefined);
  assert.equal(store.peek('a@x.org')?.expiresAt, 1_000_000 + LIMITS.lifespanMs, 'the earlier code, untouched');

  now += LIMITS.lifespanMs;
  actor.send({ type: 'sweep' });
  assert.equal(store.size, 0);
  assert.equal(await check('a@x.org', code), 0);
  actor.send({ type: 'shutdown' });
  assert.equal(actor.getSnapshot().status, 'done', 'no code mail under way: draining is over at once');
});

test('actor: draining refuses new sends and waits for the code mails under way, which settle their claims', async () => {
  const outcomes: ((error: MailroomError) => void)[] = [];
  const mailer: CodeMailer = {
    send: () => {
      const result = new Promise<never>((_, reject) => outcomes.push(reject));
      return { result, cancel: () => undefined };
    },
  };
  const store = new InMemoryOtpStore(LIMITS);
  const actor = startOtp(store, { mailer });
  const replies: (string | undefined)[] = [];
  const sends = ['a@x.org', 'b@x.org'].map((key) => sendCode(actor, key).then((e) => replies.push(e?.code)));
  await Promise.resolve();
  actor.send({ type: 'shutdown' });
  assert.ok(actor.getSnapshot().matches({ live: 'draining' }), 'two code mails are under way');
  assert.equal((await sendCode(actor, 'c@x.org'))?.code, 'ESHUTDOWN', 'a new send is refused while draining');
  assert.deepEqual(replies, [], 'nothing is answered while the mails are under way');
  for (const settle of outcomes) settle(new MailroomError('ESHUTDOWN', 'the service shut down before the message could be sent'));
  await Promise.all(sends);
  assert.deepEqual(replies, ['ESHUTDOWN', 'ESHUTDOWN']);
  assert.equal(actor.getSnapshot().status, 'done', 'stopped once nothing was under way');
  assert.equal(store.reserve('a@x.org', Date.now()).ok, true, 'the claim was released');
});

test('actor: a mailer that throws fails the send and leaves no claim', async () => {
  const mailer: CodeMailer = {
    send: () => {
      throw new MailroomError('ESHUTDOWN', 'the mail path is closed');
    },
  };
  const store = new InMemoryOtpStore(LIMITS);
  const actor = startOtp(store, { mailer });
  const error = await sendCode(actor, 'a@x.org');
  assert.equal(error?.code, 'ESHUTDOWN');
  assert.equal(store.peek('a@x.org'), undefined);
  assert.equal(store.reserve('a@x.org', Date.now()).ok, true, 'the claim was released');
  actor.stop();
});

test('actor: a correct check answers CODE_ACCEPTED once', async () => {
  const store = new InMemoryOtpStore(LIMITS);
  store.reserve('a@x.org', Date.now());
  store.commit('a@x.org', hasher.hash('a@x.org', '424242'), Date.now());
  const actor = startOtp(store, { options: { lifespanMs: 1000 } });
  const results = await Promise.all([0, 1, 2].map(() => checkCode(actor, 'a@x.org', '424242')));
  assert.deepEqual(results, [CODE_ACCEPTED, 0, 0]);
  actor.stop();
});

test('actor: the sweep runs by itself every OTP_CLEANUP_SECONDS', async () => {
  let now = 0;
  const store = new InMemoryOtpStore(LIMITS);
  store.reserve('a@x.org', now);
  store.commit('a@x.org', hasher.hash('a@x.org', '1'), now);
  const actor = startOtp(store, { options: { cleanupMs: 20 }, now: () => now });
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(store.size, 1, 'nothing expired yet');
  now = LIMITS.lifespanMs;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(store.size, 0);
  actor.stop();
});

test('store: a sweep with a limit removes at most that many, the next one carries on', () => {
  const store = new InMemoryOtpStore(LIMITS);
  for (let i = 0; i < 25; i++) {
    store.reserve(`u${i}@x.org`, 0);
    store.commit(`u${i}@x.org`, hasher.hash(`u${i}@x.org`, '1'), 0);
  }
  const expired = LIMITS.lifespanMs;
  assert.equal(store.sweep(expired, 10).removed, 10);
  assert.equal(store.size, 15);
  assert.equal(store.sweep(expired, 10).removed, 10);
  assert.equal(store.sweep(expired, 10).removed, 5);
  assert.equal(store.size, 0);
});

test('actor: an expiry wave larger than a slice is swept in slices, the event loop running in between', async () => {
  let now = 0;
  const store = new InMemoryOtpStore(LIMITS);
  const total = SWEEP_SLICE * 3 + 7;
  for (let i = 0; i < total; i++) {
    store.reserve(`u${i}@x.org`, now);
    store.commit(`u${i}@x.org`, hasher.hash(`u${i}@x.org`, '1'), now);
  }
  const actor = startOtp(store, { now: () => now });
  now = LIMITS.lifespanMs;
  actor.send({ type: 'sweep' });
  assert.equal(store.size, total - SWEEP_SLICE, 'one slice per event');
  // Each further slice waits for a turn of the event loop, and takes only one.
  const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
  await turn();
  assert.equal(store.size, total - 2 * SWEEP_SLICE, 'one slice per turn');
  await turn();
  assert.equal(store.size, total - 3 * SWEEP_SLICE, 'one slice per turn');
  await eventually(() => store.size === 0, 2000, 'the store swept');
  assert.equal(store.size, 0);
  actor.stop();
});

test('2: generated digits are uniform (chi-square over 100,000 digits)', () => {
  const counts = new Array<number>(10).fill(0);
  for (let i = 0; i < 10_000; i++) for (const d of generateCode(10)) counts[Number(d)]! += 1;
  const expected = 10_000;
  const chi = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
  // df 9: chance exceeds 44.9 once in a million runs; one digit 10 % more likely gives about 100
  assert.ok(chi < 44.9, `chi-square ${chi}`);
});

test('3: the hash is keyed and bound to the address', () => {
  const a = new CodeHasher('k'.repeat(32));
  const b = new CodeHasher('k'.repeat(32));
  const other = new CodeHasher('j'.repeat(32));
  assert.equal(a.hash('a@x.org', '123456'), b.hash('a@x.org', '123456'));
  assert.notEqual(a.hash('a@x.org', '123456'), other.hash('a@x.org', '123456'));
  assert.notEqual(a.hash('a@x.org', '123456'), a.hash('b@x.org', '123456'));
  assert.equal(a.hash('a@x.org', '123456').length, 32);
});

test('3: address normalisation trims and lower-cases local part and domain', () => {
  assert.deepEqual(normaliseOtpAddress('  Ann.Lee@Example.COM\t'), { ok: true, key: 'ann.lee@example.com', address: 'Ann.Lee@example.com' });
  assert.deepEqual(normaliseOtpAddress('ann@bücher.de'), { ok: true, key: 'ann@xn--bcher-kva.de', address: 'ann@xn--bcher-kva.de' });
  for (const bad of ['', '   ', 'ann', 'Ann <ann@x.org>', 'a@b@x.org', 'a b@x.org']) assert.equal(normaliseOtpAddress(bad).ok, false, bad);
});

test('8: minutes round up and are at least 1', () => {
  const t = { subject: '{{code}}', text: '{{minutes}}/{{seconds}}', html: '' };
  assert.equal(renderCodeMail(t, '1', 120_000).text, '2/120');
  assert.equal(renderCodeMail(t, '1', 90_000).text, '2/90');
  assert.equal(renderCodeMail(t, '1', 1_000).text, '1/1');
});

test('8: bad templates stop boot with the variable named', () => {
  const problems = (env: Record<string, string>): string => {
    try {
      loadConfig(env);
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };
  assert.match(problems({ OTP_TEXT: 'code {{cod}}' }), /OTP_TEXT: unknown placeholder \{\{cod\}\}/);
  assert.match(problems({ OTP_SUBJECT: 'a\\nb {{code}}' }), /OTP_SUBJECT: expected one line/);
  assert.match(problems({ OTP_SUBJECT: 'hello', OTP_TEXT: 'hello' }), /must contain \{\{code\}\}/);
  assert.match(problems({ OTP_HTML: '<p>hi</p>' }), /OTP_HTML: expected \{\{code\}\}/);
  assert.equal(problems({ OTP_TEXT: 'a\\nb {{ code }}' }), '');
  assert.equal(loadConfig({ OTP_TEXT: 'a\\nb {{code}}' }).otp.templates.text, 'a\nb {{code}}');
});
