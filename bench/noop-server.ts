// The floor: a bare grpc-js server of the same proto whose ValidateCode does
// nothing. Any grpc-js service on this machine is at most this fast.
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';

const proto = loadMailProto();
const server = new grpc.Server();
server.addService(proto.mail.OtpService.service, {
  SendCode: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: 'SUCCESS' }),
  ValidateCode: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: 'SUCCESS', isValid: false }),
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.send?.({ type: 'listening', port });
});
process.on('disconnect', () => process.exit(0));
