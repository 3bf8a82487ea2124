// The floor: a bare grpc-js server of the same proto whose ValidateCode does
// nothing. Any grpc-js service on this machine is at most this fast.
//
//   node dist/bench/noop-server.js [answerAfterMs]
//
// With answerAfterMs it answers after a timer instead, using no CPU
// meanwhile: a service that only waits, for latency at a given call rate.
// It answers SendMail too, with a reply shaped like mailroom's, so that a
// load generator sending mail pays exactly what it pays against mailroom.
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';

const answerAfterMs = Number(process.argv[2] ?? 0);
const proto = loadMailProto();
const server = new grpc.Server();
type Callback = grpc.sendUnaryData<unknown>;
/** A unary handler that answers with `reply`, at once or after the timer. */
const answering =
  (reply: () => unknown) =>
  (_call: unknown, cb: Callback): void => {
    if (answerAfterMs > 0) setTimeout(() => cb(null, reply()), answerAfterMs);
    else cb(null, reply());
  };
let sent = 0;
server.addService(proto.mail.OtpService.service, {
  SendCode: (_call: unknown, cb: Callback) => cb(null, { status: 'SUCCESS' }),
  ValidateCode: answering(() => ({ status: 'SUCCESS', isValid: false })),
});
server.addService(proto.mail.MailService.service, {
  SendMail: answering(() => ({ status: 'SUCCESS', message_id: `<${++sent}.5f3a9c@mailroom.invalid>`, smtp_response: '250 2.0.0 Ok: queued' })),
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.send?.({ type: 'listening', port });
});
process.on('disconnect', () => process.exit(0));
