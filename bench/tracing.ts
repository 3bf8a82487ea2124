// What tracing costs: SendMail with OTLP export on (ratio 1.0, http/protobuf
// to a receiver on loopback that takes and drops every batch) against off,
// interleaved in one run. The receiver runs in the bench's own process, so
// its CPU is not the service's.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { abScenarios, type AbOptions } from './ab.js';
import type { Ratio, Target } from './report.js';

export async function tracingScenarios(o: Pick<AbOptions, 'reps' | 'pki' | 'n' | 'log' | 'row' | 'scenarios'>): Promise<{ ratios: Ratio[]; targets: Target[]; extra: [string, string][] }> {
  let batches = 0;
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      batches++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_TRACES_SAMPLER: 'always_on' };
    const ratios = await abScenarios({ ...o, parties: [{ name: 'tracing on', env: on }, { name: 'tracing off' }], scenarios: o.scenarios ?? ['send-c15', 'send-c100'] });
    return { ratios, targets: [], extra: [['OTLP batches the receiver took', String(batches)]] };
  } finally {
    receiver.close();
  }
}
