// The gRPC port as boot opens it: every service's handlers over the parts
// boot made, behind the interceptors (metrics innermost, then who calls)
// and the listener's limits, with health and reflection beside them.
import type * as grpc from '@grpc/grpc-js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { MailroomError } from './errors.js';
import type { OtpActor } from './actors/otp.js';
import type { CodeHasher } from './otp/code.js';
import type { Mailer } from './mail/mailer.js';
import type { MemoryBudget } from './mail/memory-budget.js';
import type { Outbox } from './outbox/outbox.js';
import type { Bounces } from './bounce/open-bounces.js';
import type { SharedCaps } from './lib/rate-cap.js';
import type { Calls } from './rpc/calls.js';
import { createGrpcServer, receiveLimit } from './rpc/server.js';
import type { CallerAccess } from './rpc/access.js';
import type { ServiceHealth } from './rpc/health.js';
import { addReflection } from './rpc/reflection.js';
import { metricsInterceptor } from './rpc/metrics-interceptor.js';
import { NO_METRICS } from './metrics/service-metrics.js';
import type { PrometheusMetrics } from './metrics/metrics.js';
import { ArrivalGate } from './rpc/admission.js';
import { GrpcListener } from './rpc/listener.js';
import { mailServiceHandlers } from './rpc/mail-service.js';
import { otpServiceHandlers } from './rpc/otp-service.js';
import { suppressionServiceHandlers } from './rpc/suppression-service.js';

/** What the handlers call: the facades over the actors. */
export interface GrpcParts {
  readonly mailer: Mailer;
  readonly outbox: Outbox;
  readonly otp: OtpActor;
  readonly hasher: CodeHasher;
  readonly budget: MemoryBudget;
}

/** Every service on the gRPC port, with health and reflection, behind the interceptors and the listener's limits. */
export async function serveGrpc(
  config: Config,
  log: Logger,
  access: CallerAccess,
  actors: GrpcParts,
  parts: { calls: Calls; metrics: PrometheusMetrics | undefined; health: ServiceHealth; sharedCaps: SharedCaps | undefined; bounces: Bounces },
): Promise<{ server: grpc.Server; listener: GrpcListener }> {
  const rpcLog = log.child({ component: 'rpc' });
  const { calls, metrics } = parts;
  const { budget } = actors;
  let listener: GrpcListener | undefined;
  const server = createGrpcServer(
    {
      mail: mailServiceHandlers({ mailer: actors.mailer, outbox: actors.outbox, calls, limits: config.mail.limits, log: rpcLog, gate: parts.bounces.gate }),
      suppression: suppressionServiceHandlers({ list: parts.bounces.list, calls }),
      otp: otpServiceHandlers({ mailbox: actors.otp, calls, hasher: actors.hasher, codeLength: config.otp.length, limits: config.otp, sharedCaps: parts.sharedCaps, metrics: metrics ?? NO_METRICS, log: rpcLog, gate: parts.bounces.gate }),
    },
    config.grpc,
    config.mail.limits,
    {
      sendMailAdmission: {
        early: (owner) => budget.early(owner),
        // A decoded request's strings never take more than its encoded bytes did
        // (V8 keeps Latin-1 at a byte a character, the rest at two a UTF-16
        // unit; UTF-8 spends at least as much on each): the bytes stand for both.
        admit: (bytes, owner) => budget.admit(bytes, bytes, owner),
        // As many requests arriving at once as the budget could hold at their largest (the request, and a message as large).
        gate: new ArrivalGate(Math.max(1, Math.floor(config.intake.maxBytes / (2 * receiveLimit(config.mail.limits))))),
      },
      // Metrics innermost: every status passes it, the refusals of the others included.
      interceptors: [
        ...(metrics === undefined ? [] : [metricsInterceptor(metrics)]),
        access.interceptor({ authenticated: (peer) => listener?.authenticated(peer), refused: (peer) => listener?.refused(peer) }),
      ],
    },
    rpcLog,
  );
  parts.health.addToServer(server);
  addReflection(server);
  try {
    listener = await GrpcListener.listen(server, access.credentials(), config.host, config.port, config.grpc, rpcLog);
  } catch (err) {
    // Most often another instance holds the port: say so in the words of the
    // configuration (exit 2 from main) instead of grpc-js's stack trace.
    throw new MailroomError('ECONFIG', `invalid configuration:\n  PORT=${config.port} on HOST=${config.host}: cannot listen (${(err as Error).message})`, { cause: err });
  }
  return { server, listener };
}
