// Traces, as the code that makes spans sees them (OpenTelemetry's API only:
// the SDK and the exporter are loaded by tracing-setup.ts, and only when an
// OTLP endpoint is configured). Off, every function here returns at its
// first line: no span, no context read.
//
// A message's trace: the gRPC SERVER span (instrumentation-grpc, the
// caller's traceparent its parent) → `mailroom queue` while it waits for a
// connection → `smtp send` (CLIENT) per attempt. QUEUED: a `mailroom outbox
// publish` PRODUCER span at acceptance, whose context is stored with the
// message; each delivery run is a `mailroom outbox deliver` CONSUMER span
// linked to it (after a restart too), the attempts under it. A delivery
// report is a `mailroom delivery report` span linked to the same, with an
// event. Attributes never hold an address, a subject, a body or a code.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Link, type Span } from '@opentelemetry/api';

let on = false;
let relay: { readonly address: string; readonly port: number } = { address: '', port: 0 };
let flush: () => Promise<void> = () => Promise.resolve();

const tracer = () => trace.getTracer('mailroom');

/** OTLP is configured (the standard variables): tracing-setup.ts is to be loaded. */
export function tracingWanted(env: Readonly<Record<string, string | undefined>>): boolean {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return endpoint !== undefined && endpoint !== '' && env.OTEL_SDK_DISABLED?.toLowerCase() !== 'true' && env.OTEL_TRACES_EXPORTER?.toLowerCase() !== 'none';
}

/** Called by tracing-setup.ts once the SDK is registered. */
export function tracingStarted(shutdown: () => Promise<void>): void {
  on = true;
  flush = shutdown;
}

export function tracingOn(): boolean {
  return on;
}

/** Where the relay is, for the SMTP spans' server.address and server.port (boot knows it). */
export function tracingRelay(address: string, port: number): void {
  relay = { address, port };
}

/** Exports what is left (shutdown). */
export function flushTracing(): Promise<void> {
  return on ? flush() : Promise.resolve();
}

/** A job's spans: the context it was made in, and what is open now. */
export interface JobTrace {
  readonly parent: Context;
  /** the CONSUMER span of an outbox delivery run */
  readonly consumer: Span | undefined;
  queue: Span | undefined;
  attempt: Span | undefined;
}

/** A SYNC job's trace: under whatever span is active (the SERVER span). */
export function jobTrace(): JobTrace | undefined {
  if (!on) return undefined;
  return { parent: context.active(), consumer: undefined, queue: undefined, attempt: undefined };
}

function linkTo(stored: string | undefined): Link[] {
  if (stored === undefined || stored === '') return [];
  const linked = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, { traceparent: stored }));
  return linked === undefined ? [] : [{ context: linked }];
}

/** An outbox delivery run's trace: a CONSUMER span linked to the message's PRODUCER span (its stored traceparent). */
export function deliveryTrace(stored: string | undefined): JobTrace | undefined {
  if (!on) return undefined;
  const consumer = tracer().startSpan('mailroom outbox deliver', { kind: SpanKind.CONSUMER, links: linkTo(stored), attributes: { 'messaging.system': 'mailroom', 'messaging.operation.type': 'process' } }, ROOT_CONTEXT);
  return { parent: trace.setSpan(ROOT_CONTEXT, consumer), consumer, queue: undefined, attempt: undefined };
}

/** The job waits for a connection (again). */
export function traceQueued(t: JobTrace | undefined): void {
  if (t === undefined) return;
  t.queue?.end();
  t.queue = tracer().startSpan('mailroom queue', { kind: SpanKind.INTERNAL }, t.parent);
}

/** A connection took the job: the wait ends, an attempt begins. */
export function traceHanded(t: JobTrace | undefined, cid: string): void {
  if (t === undefined) return;
  const parent = t.queue === undefined ? t.parent : trace.setSpan(t.parent, t.queue);
  t.queue?.end();
  t.queue = undefined;
  t.attempt?.end();
  t.attempt = tracer().startSpan(
    'smtp send',
    { kind: SpanKind.CLIENT, attributes: { 'server.address': relay.address, 'server.port': relay.port, 'network.protocol.name': 'smtp', 'mailroom.connection': cid } },
    parent,
  );
}

/** The attempt ended: the relay's reply code, or the catalogue code of how it failed. */
export function traceAttempt(t: JobTrace | undefined, outcome: { readonly code?: number | undefined; readonly error?: string | undefined }): void {
  const span = t?.attempt;
  if (t === undefined || span === undefined) return;
  if (outcome.code !== undefined) span.setAttribute('smtp.response.status_code', outcome.code);
  if (outcome.error !== undefined) {
    span.setAttribute('error.type', outcome.error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error });
  }
  span.end();
  t.attempt = undefined;
}

/** The job is out of the supervisor's hands: whatever is open ends (the delivery run's span too). */
export function traceEnded(t: JobTrace | undefined, error?: string): void {
  if (t === undefined) return;
  if (error !== undefined) traceAttempt(t, { error });
  t.attempt?.end();
  t.queue?.end();
  if (t.consumer !== undefined) {
    if (error !== undefined) t.consumer.setAttribute('error.type', error);
    t.consumer.end();
  }
  t.attempt = undefined;
  t.queue = undefined;
}

/** A queued message accepted: its PRODUCER span, and the traceparent stored with it. */
export function traceAccepted(): string | undefined {
  if (!on) return undefined;
  const span = tracer().startSpan('mailroom outbox publish', { kind: SpanKind.PRODUCER, attributes: { 'messaging.system': 'mailroom', 'messaging.operation.type': 'send' } });
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  span.end();
  return carrier.traceparent;
}

/** The traceparent of the context a job was made in (a SYNC message's record keeps it for its reports). */
export function traceparentOf(t: JobTrace | undefined): string | undefined {
  if (t === undefined) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(t.parent, carrier);
  return carrier.traceparent;
}

/** A delivery report applied: a span linked to the message's trace, the report an event on it. */
export function traceReport(stored: string | undefined, state: string, kinds: readonly string[]): void {
  if (!on) return;
  const span = tracer().startSpan('mailroom delivery report', { kind: SpanKind.CONSUMER, links: linkTo(stored) }, ROOT_CONTEXT);
  span.addEvent('delivery report', { 'mailroom.message.state': state, 'mailroom.report.kinds': kinds.join(',') });
  span.end();
}

/** Ends a span begun by `beginSpan`, in error when given one (its catalogue code the error.type). */
export type EndSpan = (error?: unknown) => void;

/** A span of its own under the active one, for work that ends in a callback (a batched OTP check); undefined when off. */
export function beginSpan(name: string): EndSpan | undefined {
  if (!on) return undefined;
  return ender(tracer().startSpan(name, { kind: SpanKind.INTERNAL }));
}

function ender(span: Span): EndSpan {
  return (error) => {
    if (error !== undefined) {
      span.setAttribute('error.type', (error as { code?: string }).code ?? 'EINTERNAL');
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.end();
  };
}

/** Runs `work` in a span of its own (the OTP actor's part of a call). */
export function inSpan<T>(name: string, work: () => T): T {
  if (!on) return work();
  return tracer().startActiveSpan(name, { kind: SpanKind.INTERNAL }, (span) => {
    try {
      const result = work();
      if (result instanceof Promise) {
        const end = ender(span);
        // A rejection is an error even when it carries nothing.
        result.then(() => end(), (err: unknown) => end(err ?? {}));
      } else span.end();
      return result;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      throw err;
    }
  });
}

/** trace_id and span_id of the active span, for a log line; undefined when none. */
export function activeIds(): { trace_id: string; span_id: string } | undefined {
  if (!on) return undefined;
  const ctx = trace.getSpan(context.active())?.spanContext();
  return ctx === undefined ? undefined : { trace_id: ctx.traceId, span_id: ctx.spanId };
}
