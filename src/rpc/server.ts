// The gRPC server: both services of package mail, every call access-logged.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';
import { loadMailProto } from './proto.js';

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Wraps each unary handler so that its outcome and duration reach the log at debug. */
function logged<H extends grpc.UntypedServiceImplementation>(service: string, handlers: H, log: Logger): H {
  // The level is fixed at boot: without debug, no clock reads or closures per call.
  if (!log.isLevelEnabled('debug')) return handlers;
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const unary = handler as grpc.handleUnaryCall<unknown, unknown>;
    out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const started = process.hrtime.bigint();
      unary(call, (err, value, trailer, flags) => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const code = err ? (err.code ?? grpc.status.UNKNOWN) : grpc.status.OK;
        log.debug('call', { method: `${service}/${name}`, code: grpc.status[code], ms: Math.round(ms * 100) / 100 });
        callback(err, value, trailer, flags);
      });
    };
  }
  return out as H;
}

export function createGrpcServer(handlers: { mail: MailServiceHandlers; otp: OtpServiceHandlers }, log: Logger): grpc.Server {
  const proto = loadMailProto();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // No channelz service is offered, so its per-call trackers (closures and
    // timestamps on every call) would be kept for no reader.
    'grpc.enable_channelz': 0,
  });
  server.addService(proto.mail.MailService.service, logged('mail.MailService', handlers.mail, log));
  server.addService(proto.mail.OtpService.service, logged('mail.OtpService', handlers.otp, log));
  return server;
}

export function bindServer(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
}
