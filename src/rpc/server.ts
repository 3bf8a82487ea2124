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
import type { SuppressionServiceHandlers } from '../generated/mail/SuppressionService.js';
import { loadMailDefinition, loadMailProto } from './proto.js';
import { utf8Checks } from './utf8-fields.js';
import { deferring, Undecodable, type Admission } from './admission.js';
import { callGuard, catalogueCodes } from './call-guard.js';
import { toServiceError } from './status.js';
import { callerOf } from './auth.js';
import { MAX_FILENAME_CHARS } from './attachments.js';
import { MAX_HEADER_VALUE_CHARS, MAX_HEADERS } from './header-fields.js';
import { maxMailboxChars, type MailLimits } from './validate.js';

export interface ServerLimits {
  readonly maxStreamsPerConnection: number;
  readonly idleTimeoutMs: number;
  readonly receiveTimeoutMs: number;
}

/**
 * The largest request a valid call can be: body and html, a subject of
 * 4-byte characters, every mailbox at its longest in 4-byte characters
 * (to, cc and bcc together, and as many again in reply_to), attachments
 * whose base64 fills MAX_MESSAGE_BYTES with their names and types, every
 * extra header at its longest, List-Unsubscribe, an idempotency key, and a
 * few KB of protobuf framing. A larger one is refused by grpc-js
 * (RESOURCE_EXHAUSTED) before anything is decoded.
 */
export function receiveLimit(limits: MailLimits): number {
  const addresses = 2 * limits.maxRecipients * 4 * maxMailboxChars(limits);
  const attachments = Math.ceil((limits.maxMessageBytes * 3) / 4) + limits.maxAttachments * (4 * MAX_FILENAME_CHARS + 500);
  const headers = MAX_HEADERS * (80 + 4 * MAX_HEADER_VALUE_CHARS) + 2000;
  return limits.maxBodyBytes + 4 * limits.maxSubjectChars + addresses + attachments + headers + 200 + 16_384;
}

function tolerant(
  definition: grpc.ServiceDefinition,
  admissions: ReadonlyMap<string, Admission>,
  utf8: ReadonlyMap<string, (bytes: Buffer) => string | undefined>,
): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    const check = utf8.get(method.path) ?? (() => undefined);
    out[name] = { ...method, requestDeserialize: deferring(method.requestDeserialize, check, admissions.has(method.path)) };
  }
  return out;
}

/** What a request that does not decode (or holds a string that is not UTF-8) is answered. */
function undecodable(service: string, name: string, request: Undecodable): MailroomError {
  const { notUtf8, reason } = request;
  return new MailroomError('EINVALID', notUtf8 !== undefined ? `${notUtf8}: must be UTF-8 (proto3 strings are)` : `the request does not decode as ${service}/${name}: ${reason.slice(0, 200)}`);
}

/**
 * Wraps each handler: an undecodable request is refused before the handler
 * sees it, and at debug each unary call's outcome and duration are logged.
 */
function guarded<H extends grpc.UntypedServiceImplementation>(service: string, definition: grpc.ServiceDefinition, handlers: H, log: Logger): H {
  const debug = log.isLevelEnabled('debug');
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    if (definition[name]?.responseStream === true) {
      const streaming = handler as grpc.handleServerStreamingCall<unknown, unknown>;
      out[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (call.request instanceof Undecodable) call.emit('error', toServiceError(undecodable(service, name, call.request)));
        else streaming(call);
      };
      continue;
    }
    const unary = handler as grpc.handleUnaryCall<unknown, unknown>;
    out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      if (call.request instanceof Undecodable) {
        callback(toServiceError(undecodable(service, name, call.request)) as grpc.ServiceError);
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
        const caller = callerOf(call.metadata);
        log.debug('call', { method: `${service}/${name}`, caller: caller || undefined, code: grpc.status[code], ms: Math.round(ms * 100) / 100 });
        callback(err, value, trailer, flags);
      });
    };
  }
  return out as H;
}

export function createGrpcServer(
  handlers: { mail: MailServiceHandlers; otp: OtpServiceHandlers; suppression: SuppressionServiceHandlers },
  limits: ServerLimits,
  mailLimits: MailLimits,
  hooks: {
    sendMailAdmission: Admission;
    /** interceptors that see a call before the guard does (metrics, authentication) */
    interceptors: readonly grpc.ServerInterceptor[];
  },
  log: Logger,
): grpc.Server {
  const definition = loadMailDefinition();
  const proto = loadMailProto(definition);
  const utf8 = utf8Checks(definition);
  // A batch is admitted as one request of its size: the same budget, the same gate.
  const admissions = new Map([
    ['/mail.MailService/SendMail', hooks.sendMailAdmission],
    ['/mail.MailService/SendMailBatch', hooks.sendMailAdmission],
  ]);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': receiveLimit(mailLimits),
    'grpc.max_send_message_length': 1_048_576,
    'grpc.max_concurrent_streams': limits.maxStreamsPerConnection,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    // No channelz service is offered, so its per-call trackers (closures and
    // timestamps on every call) would be kept for no reader.
    'grpc.enable_channelz': 0,
    interceptors: [catalogueCodes, ...hooks.interceptors, callGuard(limits.receiveTimeoutMs, admissions)],
  });
  const { MailService, OtpService, SuppressionService } = proto.mail;
  server.addService(tolerant(MailService.service, admissions, utf8), guarded('mail.MailService', MailService.service, handlers.mail, log));
  server.addService(tolerant(OtpService.service, admissions, utf8), guarded('mail.OtpService', OtpService.service, handlers.otp, log));
  server.addService(tolerant(SuppressionService.service, admissions, utf8), guarded('mail.SuppressionService', SuppressionService.service, handlers.suppression, log));
  return server;
}
