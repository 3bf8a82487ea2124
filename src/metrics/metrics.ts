// What mailroom counts, in Prometheus terms (prom-client); loaded only with
// METRICS_PORT (see service-metrics.ts for the no-op). Every label value comes from a
// closed set (a catalogue code, a state of a machine, an outcome named
// here, a method of our services): never an address, a subject, a key or
// anything else a caller chose.
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './cells.js';
import { ERROR_CATALOGUE, type ErrorCode, type MailroomError } from '../errors.js';
import type { Delivered, MailJob } from '../mail/job.js';
import type { GrpcType, MetricSources, OtpCheckResult, OtpSendOutcome, ReportOutcome, ServiceMetrics } from './service-metrics.js';
import { MESSAGE_STATES } from '../outbox/lifecycle.js';

/** grpc-go's names for status codes (codes.Code.String()), which go-grpc-prometheus puts in grpc_code. */
const GRPC_CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted',
  'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
] as const;

/** Codes a delivery attempt ends with; the others (deadline, queue, shutdown, ...) end a job without one. */
const ATTEMPT_CODES: ReadonlySet<ErrorCode> = new Set(['ECONNECTION', 'ETIMEDOUT', 'ETLS', 'EAUTH', 'ESMTP_TRANSIENT', 'ESMTP_PERMANENT', 'ERECIPIENT']);

export interface CallSeries {
  readonly started: CounterCell;
  readonly seconds: HistogramCell;
  /** by status code, made on first use */
  readonly handled: (CounterCell | undefined)[];
  readonly labels: { grpc_type: GrpcType; grpc_service: string; grpc_method: string };
}

type Attempt = 'delivered' | 'transient' | 'permanent';

export class PrometheusMetrics implements ServiceMetrics {
  readonly registry = new Registry();
  private readonly grpcStarted: CounterFamily<'grpc_type' | 'grpc_service' | 'grpc_method'>;
  private readonly grpcHandled: CounterFamily<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code'>;
  private readonly grpcSeconds: HistogramFamily<'grpc_type' | 'grpc_service' | 'grpc_method'>;
  private readonly calls = new Map<string, CallSeries>();
  private readonly deliveredTotal: CounterCell;
  /** Partial: a code from outside the catalogue (a bug) must not make counting throw */
  private readonly failedTotal: Partial<Record<ErrorCode, CounterCell>>;
  private readonly attempts: Record<Attempt, CounterCell>;
  private readonly deliverySeconds: HistogramCell;
  private readonly reconnects: CounterCell;
  private readonly otpSends: Record<OtpSendOutcome, CounterCell>;
  private readonly otpChecks: Record<OtpCheckResult, CounterCell>;
  private readonly reports: Record<ReportOutcome, CounterCell>;
  private readonly suppressedTotal: CounterCell;
  private readonly outboxCommits: HistogramCell;
  private readonly storeUp: Gauge;
  private readonly lost: CounterCell;
  /** what the gauges read at a scrape; set once the actors run (watch) */
  private sources: MetricSources | undefined;

  constructor() {
    // The gauges read through this: before watch() they read nothing.
    const read = (): MetricSources | undefined => this.sources;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.grpcStarted = new CounterFamily({ name: 'grpc_server_started_total', help: 'RPCs started on the server.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method'], registers });
    this.grpcHandled = new CounterFamily({
      name: 'grpc_server_handled_total',
      help: 'RPCs completed on the server, whatever their status.',
      labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.grpcSeconds = new HistogramFamily({
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
        for (const [state, n] of read()?.connectionStates() ?? []) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'mailroom_queue_depth',
      help: 'Messages waiting for a connection (queued, or waiting out a retry backoff).',
      registers,
      collect() {
        this.set(read()?.queueDepth() ?? 0);
      },
    });
    new Gauge({
      name: 'mailroom_relay_pace_per_second',
      help: 'Messages a second the pool may send to the relay: SEND_RATE_LIMIT_PER_SECOND, or less while the relay asked to slow down (0: no limit).',
      registers,
      collect() {
        this.set(read()?.relayPace().perSecond ?? 0);
      },
    });
    new Gauge({
      name: 'mailroom_relay_slowed',
      help: 'Whether the relay asked us to slow down and the pace has not climbed back (1) or not (0).',
      registers,
      collect() {
        this.set(read()?.relayPace().slowed === true ? 1 : 0);
      },
    });
    this.deliveredTotal = new CounterFamily({ name: 'mailroom_mail_delivered_total', help: 'Messages the relay accepted (250 to the final dot).', registers }).cell();
    const failed = new CounterFamily({ name: 'mailroom_mail_failed_total', help: 'Messages that failed, by error catalogue code.', labelNames: ['code'], registers });
    this.failedTotal = failed.cellsBy('code', Object.keys(ERROR_CATALOGUE) as ErrorCode[]);
    const attempts = new CounterFamily({
      name: 'mailroom_delivery_attempts_total',
      help: 'Messages handed to the relay, by how each attempt ended (counted when its message settles).',
      labelNames: ['outcome'],
      registers,
    });
    this.attempts = attempts.cellsBy('outcome', ['delivered', 'transient', 'permanent']);
    this.deliverySeconds = new HistogramFamily({
      name: 'mailroom_mail_delivery_seconds',
      help: "From a message's enqueueing to the relay's 250 to its final dot, seconds.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    }).cell();
    this.reconnects = new CounterFamily({ name: 'mailroom_smtp_reconnects_total', help: 'Times a connection lost its session or failed a dial, and dialled again.', registers }).cell();
    const sends = new CounterFamily({ name: 'mailroom_otp_sent_total', help: 'SendCode calls by outcome: sent, refused (a limit), failed (the mail), invalid (the request).', labelNames: ['outcome'], registers });
    this.otpSends = sends.cellsBy('outcome', ['sent', 'refused', 'failed', 'invalid']);
    const checks = new CounterFamily({ name: 'mailroom_otp_checks_total', help: 'ValidateCode calls by result: valid, invalid, refused (a limit or the request), failed.', labelNames: ['result'], registers });
    this.otpChecks = checks.cellsBy('result', ['valid', 'invalid', 'refused', 'failed']);
    const reports = new CounterFamily({
      name: 'mailroom_delivery_reports_total',
      help: 'Delivery reports taken in, by recipient kind (hard, soft, complaint), or ignored_<why> for one that changed nothing (unparsed, token, unknown, unmatched, store).',
      labelNames: ['outcome'],
      registers,
    });
    this.reports = reports.cellsBy('outcome', ['hard', 'soft', 'complaint', 'ignored_unparsed', 'ignored_token', 'ignored_unknown', 'ignored_unmatched', 'ignored_store']);
    this.suppressedTotal = new CounterFamily({ name: 'mailroom_suppressed_refusals_total', help: 'Messages and codes refused because a recipient is on the suppression list (ESUPPRESSED).', registers }).cell();
    new Gauge({
      name: 'mailroom_otp_live_codes',
      help: 'OTP codes stored and not yet swept (NaN with Redis, which expires them itself and keeps no count).',
      registers,
      collect() {
        this.set(read()?.liveCodes() ?? 0);
      },
    });
    new Gauge({
      name: 'mailroom_outbox_messages',
      help: 'Messages in the outbox, by state (final ones until OUTBOX_RETENTION_SECONDS).',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await read()?.outbox().catch(() => undefined);
        for (const state of MESSAGE_STATES) this.set({ state }, counts?.states[state] ?? 0);
      },
    });
    new Gauge({
      name: 'mailroom_outbox_oldest_queued_seconds',
      help: 'Age of the oldest QUEUED message, seconds (0 when none).',
      registers,
      async collect() {
        const counts = await read()?.outbox().catch(() => undefined);
        const oldest = counts?.oldestQueuedAt;
        this.set(oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });
    this.storeUp = new Gauge({ name: 'mailroom_outbox_store_up', help: 'Whether the outbox store can write (1) or is failing (0).', registers });
    this.lost = new CounterFamily({
      name: 'mailroom_outbox_lost_messages_total',
      help: 'Messages still to be sent that a Redis which came back empty took with it (as this replica last counted them).',
      registers,
    }).cell();
    this.outboxCommits = new HistogramFamily({
      name: 'mailroom_outbox_commit_seconds',
      help: 'How long one grouped commit of the outbox took (its writes and fsync), seconds.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }).cell();
  }

  /** What the gauges read from now on. */
  watch(sources: MetricSources): void {
    this.sources = sources;
  }

  /** A Redis that came back empty took `messages` still to be sent with it. */
  readonly outboxLost = (messages: number): void => {
    this.lost.n += messages;
  };

  /** One commit of the outbox took `ms`. */
  readonly outboxCommitted = (ms: number): void => {
    this.outboxCommits.observe(ms / 1000);
  };

  /** A call of `path` (/package.Service/Method) began. */
  callStarted(path: string, type: GrpcType): CallSeries {
    let series = this.calls.get(path);
    if (series === undefined) {
      const [, service = 'unknown', method = 'unknown'] = path.split('/');
      const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
      series = { started: this.grpcStarted.cell(labels), seconds: this.grpcSeconds.cell(labels), handled: [], labels };
      this.calls.set(path, series);
    }
    series.started.n++;
    return series;
  }

  callHandled(series: CallSeries, code: number, seconds: number): void {
    series.seconds.observe(seconds);
    const handled = (series.handled[code] ??= this.grpcHandled.cell({ ...series.labels, grpc_code: GRPC_CODE_NAMES[code] ?? 'Unknown' }));
    handled.n++;
  }

  delivered(job: MailJob, delivered: Delivered): void {
    this.deliveredTotal.n++;
    this.deliverySeconds.observe((Date.now() - job.enqueuedAt) / 1000);
    // Only a transient failure is retried, so every attempt before the last failed transiently.
    this.attempts.transient.n += delivered.attempts - 1;
    this.attempts.delivered.n++;
  }

  failed(job: MailJob, error: MailroomError): void {
    const cell = this.failedTotal[error.code];
    if (cell !== undefined) cell.n++;
    if (job.attempts === 0) return;
    const lastWasAttempt = ATTEMPT_CODES.has(error.code);
    this.attempts.transient.n += lastWasAttempt ? job.attempts - 1 : job.attempts;
    if (lastWasAttempt) (error.transient ? this.attempts.transient : this.attempts.permanent).n++;
  }

  outboxAttempt(job: MailJob, error: MailroomError | undefined): void {
    if (error === undefined) {
      this.deliveredTotal.n++;
      this.deliverySeconds.observe((Date.now() - job.enqueuedAt) / 1000);
      this.attempts.delivered.n++;
      return;
    }
    if (ATTEMPT_CODES.has(error.code)) (error.transient ? this.attempts.transient : this.attempts.permanent).n++;
    if (error.transient) return;
    const cell = this.failedTotal[error.code];
    if (cell !== undefined) cell.n++;
  }

  outboxStore(up: boolean): void {
    this.storeUp.set(up ? 1 : 0);
  }

  reconnect(): void {
    this.reconnects.n++;
  }

  otpSent(outcome: OtpSendOutcome): void {
    this.otpSends[outcome].n++;
  }

  otpChecked(result: OtpCheckResult): void {
    this.otpChecks[result].n++;
  }

  report(outcome: ReportOutcome): void {
    this.reports[outcome].n++;
  }

  suppressed(): void {
    this.suppressedTotal.n++;
  }
}
