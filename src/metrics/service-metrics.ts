// What the service counts, as the code that counts sees it, and the no-op
// it counts into when METRICS_PORT is unset: prom-client (metrics.ts) is
// loaded only when metrics are served.
import type { MailroomError } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import type { MailOutcomes } from '../mail/mailer.js';
import type { OutboxCounts } from '../outbox/store.js';

export type OtpSendOutcome = 'sent' | 'refused' | 'failed' | 'invalid';
export type OtpCheckResult = 'valid' | 'invalid' | 'refused' | 'failed';
import type { ReportOutcome } from '../bounce/desk.js';
export type { ReportOutcome };
export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

export interface ServiceMetrics extends MailOutcomes {
  /** an attempt at a message from the outbox ended: delivered, or how it failed (deferred when transient) */
  outboxAttempt(job: MailJob, error: MailroomError | undefined): void;
  /** the outbox store can write, or cannot */
  outboxStore(up: boolean): void;
  /** a connection lost its session or failed a dial, and dials again */
  reconnect(): void;
  otpSent(outcome: OtpSendOutcome): void;
  otpChecked(result: OtpCheckResult): void;
  /** a delivery report, by what it was (each recipient's kind) or why it changed nothing */
  report(outcome: ReportOutcome): void;
  /** a message (or code) refused because a recipient is suppressed */
  suppressed(): void;
}

export const NO_METRICS: ServiceMetrics = {
  delivered: () => undefined,
  failed: () => undefined,
  outboxAttempt: () => undefined,
  outboxStore: () => undefined,
  reconnect: () => undefined,
  otpSent: () => undefined,
  otpChecked: () => undefined,
  report: () => undefined,
  suppressed: () => undefined,
};

/** What the gauges read when they are scraped. */
export interface MetricSources {
  /** connections in each state (every state of the machine, 0 where none is) */
  connectionStates(): ReadonlyMap<string, number>;
  /** jobs not yet with a connection: queued, or waiting out a retry backoff */
  queueDepth(): number;
  /** messages a second the pool may send now (undefined: no limit), and whether the relay slowed it */
  relayPace(): { readonly perSecond: number | undefined; readonly slowed: boolean };
  liveCodes(): number;
  /** the outbox's messages by state, its oldest queued, its bytes */
  outbox(): Promise<OutboxCounts>;
}
