// What mailroom counts, in Prometheus terms (prom-client), and the no-op it
// counts into when METRICS_PORT is unset. Every label value comes from a
// closed set (a catalogue code, a state of a machine, an outcome named
// here, a method of our services): never an address, a subject, a key or
// anything else a caller chose.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_CATALOGUE, type ErrorCode, type MailroomError } from '../errors.js';
import type { Delivered, MailJob } from '../mail/job.js';
import type { MailOutcomes } from '../mail/mailer.js';

export type OtpSendOutcome = 'sent' | 'refused' | 'failed' | 'invalid';
export type OtpCheckResult = 'valid' | 'invalid' | 'refused' | 'failed';
export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

export interface ServiceMetrics extends MailOutcomes {
  /** a connection lost its session or failed a dial, and dials again */
  reconnect(): void;
  otpSent(outcome: OtpSendOutcome): void;
  otpChecked(result: OtpCheckResult): void;
}

export const NO_METRICS: ServiceMetrics = {
  delivered: () => undefined,
  failed: () => undefined,
  reconnect: () => undefined,
  otpSent: () => undefined,
  otpChecked: () => undefined,
};

/** What the gauges read when they are scraped. */
export interface MetricSources {
  /** connections in each state (every state of the machine, 0 where none is) */
  connectionStates(): ReadonlyMap<string, number>;
  /** jobs not yet with a connection: queued, or waiting out a retry backoff */
  queueDepth(): number;
  liveCodes(): number;
}

/** grpc-go's names for status codes (codes.Code.String()), which go-grpc-prometheus puts in grpc_code. */
const GRPC_CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted',
  'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
] as const;

/** Codes a delivery attempt ends with; the others (deadline, queue, shutdown, ...) end a job without one. */
const ATTEMPT_CODES: ReadonlySet<ErrorCode> = new Set(['ECONNECTION', 'ETIMEDOUT', 'ETLS', 'EAUTH', 'ESMTP_TRANSIENT', 'ESMTP_PERMANENT', 'ERECIPIENT']);

export interface CallSeries {
  readonly started: Counter.Internal;
  readonly seconds: Histogram.Internal<string>;
  readonly handled: (Counter.Internal | undefined)[];
}

export class PrometheusMetrics implements ServiceMetrics {
  readonly registry = new Registry();
  private readonly grpcStarted: Counter<string>;
  private readonly grpcHandled: Counter<string>;
  private readonly grpcSeconds: Histogram<string>;
  private readonly calls = new Map<string, CallSeries>();
  private readonly deliveredTotal: Counter<string>;
  private readonly failedTotal: Counter<string>;
  private readonly attempts: Record<'delivered' | 'transient' | 'permanent', Counter.Internal>;
  private readonly deliverySeconds: Histogram<string>;
  private readonly reconnects: Counter<string>;
  private readonly otpSends: Counter<string>;
  private readonly otpChecks: Counter<string>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.grpcStarted = new Counter({ name: 'grpc_server_started_total', help: 'RPCs started on the server.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method'], registers });
    this.grpcHandled = new Counter({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, whatever their status.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.grpcSeconds = new Histogram({
      name: 'grpc_server_handling_seconds',
      help: 'Time from the start of an RPC to its status, seconds.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: 'mailroom_smtp_connections',
      help: 'SMTP connections in each state of the connection machine.',
      labelNames: ['state'],
      registers,
      collect() {
        for (const [state, n] of sources.connectionStates()) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'mailroom_queue_depth',
      help: 'Messages waiting for a connection (queued, or waiting out a retry backoff).',
      registers,
      collect() {
        this.set(sources.queueDepth());
      },
    });
    this.deliveredTotal = new Counter({ name: 'mailroom_mail_delivered_total', help: 'Messages the relay accepted (250 to the final dot).', registers });
    this.failedTotal = new Counter({ name: 'mailroom_mail_failed_total', help: 'Messages that failed, by error catalogue code.', labelNames: ['code'], registers });
    for (const code of Object.keys(ERROR_CATALOGUE)) this.failedTotal.labels(code).inc(0);
    const attemptsTotal = new Counter({
      name: 'mailroom_delivery_attempts_total',
      help: 'Messages handed to the relay, by how each attempt ended (counted when its message settles).',
      labelNames: ['outcome'],
      registers,
    });
    this.attempts = { delivered: attemptsTotal.labels('delivered'), transient: attemptsTotal.labels('transient'), permanent: attemptsTotal.labels('permanent') };
    for (const child of Object.values(this.attempts)) child.inc(0);
    this.deliverySeconds = new Histogram({
      name: 'mailroom_mail_delivery_seconds',
      help: "From a message's enqueueing to the relay's 250 to its final dot, seconds.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.reconnects = new Counter({ name: 'mailroom_smtp_reconnects_total', help: 'Times a connection lost its session or failed a dial, and dialled again.', registers });
    this.otpSends = new Counter({ name: 'mailroom_otp_sent_total', help: 'SendCode calls by outcome: sent, refused (a limit), failed (the mail), invalid (the request).', labelNames: ['outcome'], registers });
    for (const o of ['sent', 'refused', 'failed', 'invalid']) this.otpSends.labels(o).inc(0);
    this.otpChecks = new Counter({ name: 'mailroom_otp_checks_total', help: 'ValidateCode calls by result: valid, invalid, refused (a limit or the request), failed.', labelNames: ['result'], registers });
    for (const r of ['valid', 'invalid', 'refused', 'failed']) this.otpChecks.labels(r).inc(0);
    new Gauge({
      name: 'mailroom_otp_live_codes',
      help: 'OTP codes stored and not yet swept (in memory; with Redis, -1: it expires them itself).',
      registers,
      collect() {
        this.set(sources.liveCodes());
      },
    });
  }

  /** A call of `path` (/package.Service/Method) began. */
  callStarted(path: string, type: GrpcType): CallSeries {
    const key = `${type} ${path}`;
    let series = this.calls.get(key);
    if (series === undefined) {
      const [, service = 'unknown', method = 'unknown'] = path.split('/');
      series = {
        started: this.grpcStarted.labels(type, service, method),
        seconds: this.grpcSeconds.labels(type, service, method),
        handled: GRPC_CODE_NAMES.map(() => undefined),
      };
      this.calls.set(key, series);
    }
    series.started.inc();
    return series;
  }

  callHandled(series: CallSeries, path: string, type: GrpcType, code: number, seconds: number): void {
    series.seconds.observe(seconds);
    let handled = series.handled[code];
    if (handled === undefined) {
      const [, service = 'unknown', method = 'unknown'] = path.split('/');
      handled = this.grpcHandled.labels(type, service, method, GRPC_CODE_NAMES[code] ?? 'Unknown');
      series.handled[code] = handled;
    }
    handled.inc();
  }

  delivered(job: MailJob, delivered: Delivered): void {
    this.deliveredTotal.inc();
    this.deliverySeconds.observe((Date.now() - job.enqueuedAt) / 1000);
    // Only a transient failure is retried, so every attempt before the last failed transiently.
    if (delivered.attempts > 1) this.attempts.transient.inc(delivered.attempts - 1);
    this.attempts.delivered.inc();
  }

  failed(job: MailJob, error: MailroomError): void {
    this.failedTotal.labels(error.code).inc();
    if (job.attempts === 0) return;
    const lastWasAttempt = ATTEMPT_CODES.has(error.code);
    const transient = lastWasAttempt ? job.attempts - 1 : job.attempts;
    if (transient > 0) this.attempts.transient.inc(transient);
    if (lastWasAttempt) (error.transient ? this.attempts.transient : this.attempts.permanent).inc();
  }

  reconnect(): void {
    this.reconnects.inc();
  }

  otpSent(outcome: OtpSendOutcome): void {
    this.otpSends.labels(outcome).inc();
  }

  otpChecked(result: OtpCheckResult): void {
    this.otpChecks.labels(result).inc();
  }
}
