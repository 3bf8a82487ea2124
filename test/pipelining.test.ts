// RFC 2920 pipelining of MAIL/RCPT/DATA: refusals inside a pipelined group
// fail the message exactly as the stepwise path does, nothing reaches the
// recipients that were accepted, and the connection serves the next message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startSmtp, startService, relayEnv, sendMail, expectGrpcError, type SmtpPeer, type RunningService } from './helpers.js';

const refusing = {
  onRcptTo(address: { address: string }, _session: unknown, cb: (err?: Error | null) => void) {
    if (address.address.startsWith('refused@')) cb(Object.assign(new Error('no such user'), { responseCode: 550 }));
    else if (address.address.startsWith('later@')) cb(Object.assign(new Error('mailbox busy'), { responseCode: 450 }));
    else cb();
  },
};

for (const pipelining of [true, false]) {
  const name = pipelining ? 'pipelined' : 'stepwise (relay without PIPELINING)';
  let smtp: SmtpPeer;
  let svc: RunningService;

  before(async () => {
    smtp = await startSmtp({ extra: { ...refusing, hidePIPELINING: !pipelining } as never });
    // one connection: every case runs on the session the previous one left
    svc = await startService(relayEnv(smtp.port, { WORKERS: '1', SEND_MAX_ATTEMPTS: '1' }));
  });

  after(async () => {
    await svc.close();
    await smtp.close();
  });

  test(`${name}: refusals fail the message, accepted recipients get nothing, the session carries on`, async () => {
    const ok = async (to: string): Promise<void> => {
      const before = smtp.messages.length;
      const res = await sendMail(svc, { to, subject: 's', body: 'b\r\n.\r\nafter a dot line' });
      assert.equal(res.status, 'SUCCESS');
      assert.equal(smtp.messages.length, before + 1);
      assert.match(smtp.messages.at(-1)?.raw ?? '', /\r\n\.\r\nafter a dot line/);
    };
    await ok('first@example.com');

    const permanent = await expectGrpcError(sendMail(svc, { to: 'refused@example.com', subject: 's', body: 'b' }));
    assert.equal(permanent.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(permanent.metadata.get('smtp-code')[0], '550');
    await ok('second@example.com');

    const before = smtp.messages.length;
    const mixed = await expectGrpcError(sendMail(svc, { to: 'good@example.com, refused@example.com', subject: 's', body: 'b' }));
    assert.equal(mixed.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(smtp.messages.length, before, 'the accepted recipient got nothing');
    await ok('third@example.com');

    const transient = await expectGrpcError(sendMail(svc, { to: 'later@example.com', subject: 's', body: 'b' }));
    assert.equal(transient.code, grpc.status.UNAVAILABLE);
    assert.equal(transient.metadata.get('smtp-code')[0], '450');
    await ok('fourth@example.com');
  });
}
