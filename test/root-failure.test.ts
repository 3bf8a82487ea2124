// A root actor that fails (a bug, not a fault of the relay) must not leave
// callers hanging: every call still open and every new one is answered at
// once with INTERNAL, the cause goes to the log, and the process exits
// non-zero so that an orchestrator restarts it. The failing implementations
// come through machine.provide(...), as boot lets tests do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { supervisorMachine } from '../src/actors/supervisor.js';
import { otpMachine } from '../src/actors/otp.js';
import { assertEvent } from 'xstate';
import { loadMailProto } from '../src/rpc/proto.js';
import { startProcess } from './process.js';
import {
  expectGrpcError,
  faultEnv,
  mail,
  once,
  recordingLogger,
  sendCode,
  sendMail,
  startRig,
  validateCode,
} from './helpers.js';

const BOOM = 'boom';
const failingSupervisor = supervisorMachine.provide({
  actions: {
    admitJobs: ({ context, event }) => {
      assertEvent(event, 'jobs.submitted');
      for (const job of event.jobs) {
        if (job.message.raw.includes(`\r\nSubject: ${BOOM}\r\n`)) throw new Error('a bug in the supervisor');
        context.ledger.admit(job);
      }
    },
  },
});

test('a failed supervisor: the calls it held and every new call are answered INTERNAL at once, and the cause is logged', async (t) => {
  const { logger, entries } = recordingLogger('error');
  // The relay sits on every final dot for 10 s: whatever is under way stays under way.
  const { peer, svc } = await startRig(t, { script: (c) => (c.stage === 'dot' ? { delay: 10_000 } : undefined) }, { SMTP_DATA_TIMEOUT_MS: '20000' }, {
    log: logger,
    machines: { supervisor: failingSupervisor },
  });
  const held = sendMail(svc, mail('held'));
  const code = sendCode(svc, 'pending@example.com');
  await peer.until(() => peer.count('DATA') >= 2, 3000, 'both mails at the relay');
  const started = Date.now();
  const boom = expectGrpcError(sendMail(svc, { ...mail(), subject: BOOM }));
  const errors = await Promise.all([boom, expectGrpcError(held), expectGrpcError(code)]);
  for (const err of errors) {
    assert.equal(err.code, grpc.status.INTERNAL);
    assert.equal(err.details, 'internal error', 'a generic message; the cause is in the log');
  }
  assert.ok(Date.now() - started < 1000, `answered at once, not when the relay answers (${Date.now() - started} ms)`);
  const later = await Promise.all([expectGrpcError(sendMail(svc, mail('after'))), expectGrpcError(validateCode(svc, 'a@example.com', '123456'))]);
  assert.deepEqual(
    later.map((e) => e.code),
    [grpc.status.INTERNAL, grpc.status.INTERNAL],
    'new calls too',
  );
  const failure = await svc.service.failed;
  assert.match(failure.message, /a bug in the supervisor/);
  const logged = entries.find((e) => e.message.startsWith('supervisor actor failed'));
  assert.ok(logged !== undefined, 'the failure is logged');
  assert.match(String(logged.stack), /a bug in the supervisor/, 'with its stack');
});

test('a failed OTP actor: its callers and every new call are answered INTERNAL at once', async (t) => {
  const failingOtp = otpMachine.provide({
    actions: {
      checkCodes: () => {
        throw new Error('a bug in the OTP actor');
      },
    },
  });
  const { logger, entries } = recordingLogger('error');
  const { svc } = await startRig(t, {}, {}, { log: logger, machines: { otp: failingOtp } });
  const err = await expectGrpcError(validateCode(svc, 'a@example.com', '123456'));
  assert.equal(err.code, grpc.status.INTERNAL);
  assert.equal((await expectGrpcError(sendCode(svc, 'b@example.com'))).code, grpc.status.INTERNAL);
  assert.equal((await expectGrpcError(sendMail(svc, mail()))).code, grpc.status.INTERNAL, 'the service as a whole is failing: it is about to exit');
  assert.match((await svc.service.failed).message, /a bug in the OTP actor/);
  assert.ok(entries.some((e) => e.message.startsWith('otp actor failed')));
});

test('the process answers, then exits with code 1', async (t) => {
  const { peer } = await startRig(t);
  const script = fileURLToPath(new URL('./fixtures/failing-supervisor.js', import.meta.url));
  const { proc, port, exited } = await startProcess(faultEnv(peer.port), { script });
  t.after(() => {
    proc.kill('SIGKILL');
  });
  const proto = loadMailProto();
  const client = new proto.mail.MailService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const err = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.SendMail({ to: 'a@example.com', subject: BOOM, body: 'x' }, { deadline: Date.now() + 5000 }, (e) => resolve(e)),
  );
  client.close();
  assert.equal(err?.code, grpc.status.INTERNAL);
  const { code } = await exited;
  assert.equal(code, 1, 'exits non-zero, for an orchestrator to restart it');
});
