// The two protobuf protocols of OTLP, grpc and http/protobuf, each against a
// real receiver on loopback (a grpc-js server taking the OTLP TraceService's
// Export, a node:http server taking POST /v1/traces), the bytes decoded by a
// few lines of protobuf wire-format reading: the SYNC trace arrives whole
// (SERVER → queue → smtp send) under the caller's traceparent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../src/rpc/proto.js';
import { eventually, freshOutbox, otlpEnv, relayEnv, startSmtp } from './helpers.js';
import { startProcess } from './process.js';

interface Span {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
}

/** The fields of one protobuf message: number → the values of its length-delimited or varint occurrences. */
function fields(buf: Buffer): Map<number, (Buffer | bigint)[]> {
  const out = new Map<number, (Buffer | bigint)[]>();
  let at = 0;
  const varint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = buf[at++];
      if (byte === undefined) throw new Error('protobuf: a varint runs past the end');
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
  };
  while (at < buf.length) {
    const key = Number(varint());
    const wire = key & 7;
    let value: Buffer | bigint;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const length = Number(varint());
      value = buf.subarray(at, at + length);
      at += length;
    } else if (wire === 1 || wire === 5) {
      value = buf.subarray(at, at + (wire === 1 ? 8 : 4));
      at += wire === 1 ? 8 : 4;
    } else throw new Error(`protobuf: wire type ${wire}`);
    out.set(key >> 3, [...(out.get(key >> 3) ?? []), value]);
  }
  return out;
}

const bytesOf = (m: Map<number, (Buffer | bigint)[]>, n: number): Buffer[] => (m.get(n) ?? []).filter((v): v is Buffer => Buffer.isBuffer(v));

/** ExportTraceServiceRequest → ResourceSpans (1) → ScopeSpans (2) → Span (2). */
function spansOf(request: Buffer): Span[] {
  return bytesOf(fields(request), 1).flatMap((resource) =>
    bytesOf(fields(resource), 2).flatMap((scope) =>
      bytesOf(fields(scope), 2).map((raw) => {
        const span = fields(raw);
        const hex = (n: number): string => bytesOf(span, n)[0]?.toString('hex') ?? '';
        return { traceId: hex(1), spanId: hex(2), parentSpanId: hex(4), name: bytesOf(span, 5)[0]?.toString('utf8') ?? '', kind: Number(span.get(6)?.[0] ?? 0) };
      }),
    ),
  );
}

type Receiver = { endpoint: string; spans: Span[]; close(): Promise<void> };

async function grpcReceiver(): Promise<Receiver> {
  const spans: Span[] = [];
  const server = new grpc.Server();
  const raw = (b: Buffer): Buffer => b;
  server.addService(
    { Export: { path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
        spans.push(...spansOf(call.request));
        done(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse: everything taken
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { endpoint: `http://127.0.0.1:${port}`, spans, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

async function httpReceiver(): Promise<Receiver> {
  const spans: Span[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      assert.equal(req.url, '/v1/traces');
      assert.equal(req.headers['content-type'], 'application/x-protobuf');
      spans.push(...spansOf(Buffer.concat(chunks)));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

for (const [protocol, start] of [
  ['grpc', grpcReceiver],
  ['http/protobuf', httpReceiver],
] as const) {
  test(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}: a SYNC SendMail's trace reaches a real receiver whole`, async (t) => {
    const otlp = await start();
    const smtp = await startSmtp();
    const svc = await startProcess(relayEnv(smtp.port, { WORKERS: '1', OUTBOX_PATH: freshOutbox(), ...otlpEnv(otlp.endpoint, protocol) }), { timeoutMs: 20_000 });
    const mail = new (loadMailProto().mail.MailService)(`127.0.0.1:${svc.port}`, grpc.credentials.createInsecure());
    t.after(async () => {
      mail.close();
      svc.proc.kill('SIGKILL');
      await smtp.close();
      await otlp.close();
    });
    const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
    const callerSpan = '00f067aa0ba902b7';
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${traceId}-${callerSpan}-01`);
    await new Promise((resolve, reject) => mail.SendMail({ to: 'a@example.com', subject: 's', body: 'b' }, metadata, (e, r) => (e ? reject(e) : resolve(r))));
    const server = await eventually(() => otlp.spans.find((s) => s.traceId === traceId && s.name.endsWith('SendMail')), 10_000, 'the SERVER span');
    assert.equal(server.parentSpanId, callerSpan);
    assert.equal(server.kind, 2, 'SPAN_KIND_SERVER');
    const queue = await eventually(() => otlp.spans.find((s) => s.name === 'mailroom queue' && s.parentSpanId === server.spanId), 10_000, 'the queue span');
    const smtpSpan = await eventually(() => otlp.spans.find((s) => s.name === 'smtp send' && s.parentSpanId === queue.spanId), 10_000, 'the SMTP span');
    assert.equal(smtpSpan.kind, 3, 'SPAN_KIND_CLIENT');
    assert.ok(!otlp.spans.some((s) => s.name.endsWith('/Export')), "the exporter's own calls are not traced");
  });
}
