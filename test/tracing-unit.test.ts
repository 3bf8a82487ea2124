// lib/tracing.ts with the SDK's in-memory exporter: the spans a job makes,
// their parents, links and attributes; and off, nothing at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, trace, SpanKind } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { propagation } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import * as tracing from '../src/lib/tracing.js';

test('off: no trace, no span, nothing stored', () => {
  assert.equal(tracing.jobTrace(), undefined);
  assert.equal(tracing.traceAccepted(), undefined);
  assert.equal(tracing.deliveryTrace('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), undefined);
  assert.equal(tracing.inSpan('x', () => 42), 42);
});

test('on: a job under the active span: queue → smtp send, a retry a second attempt; a delivery linked to its producer', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  tracing.tracingStarted(() => provider.shutdown());
  tracing.tracingRelay('relay.example', 587);
  const server = trace.getTracer('t').startSpan('server', { kind: SpanKind.SERVER });
  const job = context.with(trace.setSpan(context.active(), server), () => tracing.jobTrace());
  tracing.traceQueued(job);
  tracing.traceHanded(job, 'c1');
  tracing.traceAttempt(job, { code: 451, error: 'ESMTP_TRANSIENT' });
  tracing.traceQueued(job);
  tracing.traceHanded(job, 'c2');
  tracing.traceAttempt(job, { code: 250 });
  tracing.traceEnded(job);
  server.end();
  const spans = exporter.getFinishedSpans();
  const queues = spans.filter((s) => s.name === 'mailroom queue');
  const sends = spans.filter((s) => s.name === 'smtp send');
  assert.equal(queues.length, 2);
  assert.equal(sends.length, 2);
  for (const q of queues) assert.equal(q.parentSpanContext?.spanId, server.spanContext().spanId);
  assert.deepEqual(sends.map((s) => s.parentSpanContext?.spanId), queues.map((q) => q.spanContext().spanId));
  assert.equal(sends[0]?.attributes['error.type'], 'ESMTP_TRANSIENT');
  assert.equal(sends[1]?.attributes['smtp.response.status_code'], 250);
  assert.equal(sends[1]?.attributes['server.address'], 'relay.example');

  const stored = context.with(trace.setSpan(context.active(), server), () => tracing.traceAccepted());
  assert.match(stored ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  const delivery = tracing.deliveryTrace(stored);
  tracing.traceQueued(delivery);
  tracing.traceHanded(delivery, 'c1');
  tracing.traceAttempt(delivery, { code: 250 });
  tracing.traceEnded(delivery);
  const producer = exporter.getFinishedSpans().find((s) => s.name === 'mailroom outbox publish');
  const consumer = exporter.getFinishedSpans().find((s) => s.name === 'mailroom outbox deliver');
  assert.equal(producer?.kind, SpanKind.PRODUCER);
  assert.equal(consumer?.kind, SpanKind.CONSUMER);
  assert.equal(consumer?.links[0]?.context.spanId, producer?.spanContext().spanId);
  assert.ok(exporter.getFinishedSpans().some((s) => s.name === 'smtp send' && s.spanContext().traceId === consumer?.spanContext().traceId));
});
