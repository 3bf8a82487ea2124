// What the inspector costs: SendMail at C=100 with the inspector on and a
// page watching it (a reader of its event stream, as a browser's
// EventSource), against the inspector off, interleaved. Target: >= 0.8x
// the throughput, and the service's memory bounded (peak RSS reported).
import { request, type ClientRequest } from 'node:http';
import type { BenchPki } from './pki.js';
import { abScenarios } from './ab.js';
import { freePort } from './common.js';
import type { Ratio, Row, Target } from './report.js';

export interface InspectContext {
  readonly reps: number;
  readonly pki: BenchPki;
  readonly n: { mail: number; mailWarm: number; rpc: number; rpcWarm: number };
  log(s: string): void;
  row(id: string, label: string, mail: boolean): Row;
}

/** Reads the event stream to its end (a page left open); returns how to close it and how many bytes came. */
function watch(port: number): { close(): number } {
  let bytes = 0;
  const req: ClientRequest = request({ host: '127.0.0.1', port, path: '/stream' }, (res) => res.on('data', (d: Buffer) => (bytes += d.length)));
  req.on('error', () => undefined);
  req.end();
  return {
    close: () => {
      req.destroy();
      return bytes;
    },
  };
}

export async function inspectorCost(ctx: InspectContext): Promise<{ ratios: Ratio[]; targets: Target[]; extra: [string, string][] }> {
  const port = await freePort();
  const streamed: number[] = [];
  const ratios = await abScenarios({
    reps: ctx.reps,
    pki: ctx.pki,
    n: ctx.n,
    parties: [{ name: 'inspector on, page open', env: { INSPECT_PORT: String(port) } }, { name: 'inspector off' }],
    log: ctx.log,
    row: ctx.row,
    scenarios: ['send-c100'],
    attach: async (index) => {
      if (index !== 0) return () => undefined;
      const page = watch(port);
      return () => streamed.push(page.close());
    },
  });
  const cost = ratios[0];
  const targets: Target[] = cost === undefined ? [] : [{ name: 'SendMail C=100 throughput, inspector page open / inspector off', figure: `${cost.throughput.toFixed(2)}×`, limit: '≥ 0.80×', holds: cost.throughput >= 0.8 }];
  return { ratios, targets, extra: [['inspector: bytes streamed to the page per repetition', streamed.map((b) => `${(b / 1_048_576).toFixed(1)} MB`).join(', ')]] };
}
