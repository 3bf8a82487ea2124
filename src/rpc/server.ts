// The gRPC server: both services of package mail, every call access-logged
// at debug, a request that does not decode answered INVALID_ARGUMENT, and
// limits that follow from the configured ones: how large a request may be,
// how many streams a connection may open, how long a connection may idle and
// a request may take to arrive.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import type { MailServiceHandlers } from '../generated/mail/MailService.js';
import type { OtpServiceHandlers } from '../generated/mail/OtpService.js';
import { loadMailProto } from './proto.js';
import { toServiceError } from './status.js';
import { maxMailboxChars, type MailLimits } from './validate.js';

export interface ServerLimits {
  readonly mail: MailLimits;
  readonly maxStreamsPerConnection: number;
  readonly idleTimeoutMs: number;
  readonly receiveTimeoutMs: number;
}

/**
 * The largest request a valid call can be: body and html, a subject of
 * 4-byte characters, every mailbox at its longest in 4-byte characters
 * (to, cc and bcc together, and as many again in reply_to), an idempotency
 * key, and a few KB of protobuf framing. A larger one is refused by grpc-js
 * (RESOURCE_EXHAUSTED) before anything is decoded.
 */
export function receiveLimit(limits: MailLimits): number {
  return limits.maxBodyBytes + 4 * limits.maxSubjectChars + 2 * limits.maxRecipients * 4 * maxMailboxChars(limits) + 200 + 16_384;
}

/** What a request that failed to decode becomes: the handler answers INVALID_ARGUMENT instead of grpc-js's INTERNAL. */
class Undecodable {
  constructor(readonly reason: string) {}
}

function tolerant(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new Undecodable((err as Error).message);
        }
      },
    };
  }
  return out;
}

/**
 * Wraps each unary handler: an undecodable request is refused before the
 * handler sees it, and at debug each call's outcome and duration are logged.
 */
function guarded<H extends grpc.UntypedServiceImplementation>(service: string, handlers: H, log: Logger): H {
  const debug = log.isLevelEnabled('debug');
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const unary = handler as grpc.handleUnaryCall<unknown, unknown>;
    out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      if (call.request instanceof Undecodable) {
        callback(toServiceError(new MailroomError('EINVALID', `the request does not decode as ${service}/${name}: ${call.request.reason.slice(0, 200)}`)) as grpc.ServiceError);
        return;
      }
      // The level is fixed at boot: without debug, no clock reads or closures per call.
      if (!debug) {
        unary(call, callback);
        return;
      }
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

/**
 * Ends a call whose request has not fully arrived `ms` after it began: a
 * client that opens a stream and stops sending must not hold the request's
 * buffers for ever. `started` hears of every call, with its peer.
 */
function receiveDeadline(ms: number, started: (peer: string) => void): grpc.ServerInterceptor {
  return (_method, call) => {
    let timer: NodeJS.Timeout | undefined;
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            started(call.getPeer());
            timer = setTimeout(() => {
              intercepting.sendStatus({ code: grpc.status.DEADLINE_EXCEEDED, details: `the request did not arrive within ${ms} ms` });
            }, ms);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            clearTimeout(timer);
            nextMessage(message);
          },
          onCancel: () => clearTimeout(timer),
        }),
      sendStatus: (status, next) => {
        clearTimeout(timer);
        next(status);
      },
    });
    return intercepting;
  };
}

export function createGrpcServer(
  handlers: { mail: MailServiceHandlers; otp: OtpServiceHandlers },
  limits: ServerLimits,
  onCall: (peer: string) => void,
  log: Logger,
): grpc.Server {
  const proto = loadMailProto();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': receiveLimit(limits.mail),
    'grpc.max_send_message_length': 1_048_576,
    'grpc.max_concurrent_streams': limits.maxStreamsPerConnection,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    // No channelz service is offered, so its per-call trackers (closures and
    // timestamps on every call) would be kept for no reader.
    'grpc.enable_channelz': 0,
    interceptors: [receiveDeadline(limits.receiveTimeoutMs, onCall)],
  });
  server.addService(tolerant(proto.mail.MailService.service), guarded('mail.MailService', handlers.mail, log));
  server.addService(tolerant(proto.mail.OtpService.service), guarded('mail.OtpService', handlers.otp, log));
  return server;
}
