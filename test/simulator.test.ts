// The mailbox simulator in capture mode (nothing configured): every outcome
// of a message, through the public surface, with no relay and no
// BOUNCE_DOMAIN; simulator mail never reaches the capture relay, and its
// reports never suppress.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startService, sendMail, sendCode, expectGrpcError, metadataValue, type RunningService } from './helpers.js';
import { queue, until, watch } from './outbox-client.js';

const SIM = 'simulator.mailroom.invalid';
let dir: string;
let svc: RunningService;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mailroom-sim-'));
  svc = await startService({ MAIL_CAPTURE_DIR: dir, WORKERS: '1', EMAIL_FROM: 'noreply@example.com' });
});

after(async () => {
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

const captured = (): number => readdirSync(dir).filter((f) => f.endsWith('.eml')).length;

test('queued: success is SENT, bounce BOUNCED (5.1.1) within 2 s, complaint COMPLAINED, defer DEFERRED once then SENT, reject FAILED ERECIPIENT', async () => {
  const w = watch(svc);
  const send = (local: string) => queue(svc, { to: `${local}@${SIM}`, subject: local, body: 'b' });
  const [ok, bounce, complaint, defer, reject] = await Promise.all(['success', 'bounce', 'complaint', 'defer', 'reject'].map(send));
  const started = Date.now();
  await until(svc, ok!.message_id, 'MESSAGE_STATE_SENT');
  const bounced = await until(svc, bounce!.message_id, 'MESSAGE_STATE_BOUNCED', 2000);
  assert.ok(Date.now() - started < 2000);
  assert.equal(bounced.bounces.length, 1);
  assert.deepEqual({ ...bounced.bounces[0], at: undefined }, { recipient_index: 0, kind: 'BOUNCE_KIND_HARD', status: '5.1.1', diagnostic: '550 5.1.1 simulated: no such mailbox', at: undefined });
  const complained = await until(svc, complaint!.message_id, 'MESSAGE_STATE_COMPLAINED', 2000);
  assert.equal(complained.bounces[0]?.kind, 'BOUNCE_KIND_COMPLAINT');
  const sent = await until(svc, defer!.message_id, 'MESSAGE_STATE_SENT', 5000);
  assert.equal(sent.attempts, 2);
  const failed = await until(svc, reject!.message_id, 'MESSAGE_STATE_FAILED');
  assert.equal(failed.error_code, 'ERECIPIENT');
  assert.match(failed.last_response, /^550 5\.1\.1/);
  // WatchMessages carries each change: SENT then BOUNCED for the bounce, DEFERRED before SENT for the deferral.
  await w.until((events) => events.some((e) => e.status?.message_id === bounce!.message_id && e.status.state === 'MESSAGE_STATE_BOUNCED'));
  const statesOf = (id: string): string[] => w.events.filter((e) => e.status?.message_id === id).map((e) => e.status?.state ?? '');
  assert.deepEqual(statesOf(bounce!.message_id), ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_SENDING', 'MESSAGE_STATE_SENT', 'MESSAGE_STATE_BOUNCED']);
  assert.deepEqual(statesOf(defer!.message_id).slice(0, 4), ['MESSAGE_STATE_QUEUED', 'MESSAGE_STATE_SENDING', 'MESSAGE_STATE_DEFERRED', 'MESSAGE_STATE_SENDING']);
  w.close();
  assert.equal(captured(), 0, 'no simulator message reached the relay');
});

test('SYNC: reject fails ERECIPIENT at once; bounce answers SENT and its status turns BOUNCED', async () => {
  const err = await expectGrpcError(sendMail(svc, { to: `reject@${SIM}`, subject: 's', body: 'b' }));
  assert.equal(metadataValue(err, 'mailroom-error'), 'ERECIPIENT');
  assert.match(err.details, /550 5\.1\.1/);
  const res = await sendMail(svc, { to: `Bounce@${SIM}`, subject: 's', body: 'b' });
  assert.equal(res.state, 'MESSAGE_STATE_SENT');
  assert.match(res.smtp_response, /^250 2\.0\.0 simulated/);
  const status = await until(svc, res.message_id, 'MESSAGE_STATE_BOUNCED', 2000);
  assert.equal(status.bounces[0]?.status, '5.1.1');
  // A SYNC deferral is retried at once, as a relay's 451 is: two attempts, SENT.
  const deferred = await sendMail(svc, { to: `defer@${SIM}`, subject: 's', body: 'b' });
  assert.equal((await until(svc, deferred.message_id, 'MESSAGE_STATE_SENT')).attempts, 2);
  assert.equal(captured(), 0);
});

test('simulated bounces and complaints never suppress: the same address sends again, and a code too', async () => {
  await until(svc, (await queue(svc, { to: `bounce@${SIM}`, subject: 's', body: 'b' })).message_id, 'MESSAGE_STATE_BOUNCED', 2000);
  const again = await sendMail(svc, { to: `bounce@${SIM}`, subject: 's', body: 'b' });
  assert.equal(again.status, 'SUCCESS');
  const code = await sendCode(svc, `complaint@${SIM}`);
  assert.equal(code.status, 'SUCCESS');
});

test('simulator addresses cannot share a message with real ones', async () => {
  const err = await expectGrpcError(sendMail(svc, { to: `success@${SIM}`, cc: ['real@example.com'], subject: 's', body: 'b' }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
  assert.match(err.details, /simulator addresses/);
  assert.equal(captured(), 0);
});
