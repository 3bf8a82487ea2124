// A/B: the same scenarios against two services in one run, interleaved, so
// that a change is measured against what it changes and not against another
// day's machine. A party is a build (`--baseline=<checkout>` with its own
// dist/) or a configuration of this one (extra environment). Each
// repetition runs every scenario for A then B, the next B then A, so that
// neither always meets the warmer sink.
import type { BenchPki } from './pki.js';
import type { LoadgenOptions } from './loadgen.js';
import { measure, startNodeSink, startService, type ServiceProc } from './procs.js';
import { ratio, type Ratio, type Row } from './report.js';

export interface Party {
  readonly name: string;
  readonly root?: string;
  readonly env?: Record<string, string>;
}

export interface AbOptions {
  readonly reps: number;
  readonly pki: BenchPki;
  readonly n: { mail: number; mailWarm: number; rpc: number; rpcWarm: number };
  readonly parties: readonly [Party, Party];
  readonly log: (s: string) => void;
  readonly row: (id: string, label: string, mail: boolean) => Row;
  /** which scenarios; default all */
  readonly scenarios?: readonly AbScenario[];
  /** something to attach to party `index`'s service while it is measured (a page watching the inspector); returns how to detach */
  readonly attach?: (index: number) => Promise<() => void>;
}

export type AbScenario = 'send-c15' | 'send-c100' | 'queued-c100' | 'validate-c100' | 'sendcode-c15' | 'sendcode-c100';

const SCENARIOS: Record<AbScenario, { label: string; mail: boolean; load: (port: number, rep: number, n: AbOptions['n']) => LoadgenOptions }> = {
  'send-c15': { label: 'SendMail TLS+AUTH W=5, C=15', mail: true, load: (port, _rep, n) => ({ target: `127.0.0.1:${port}`, method: 'SendMail', concurrency: 15, warmup: n.mailWarm, count: n.mail }) },
  'send-c100': { label: 'SendMail TLS+AUTH W=5, C=100', mail: true, load: (port, _rep, n) => ({ target: `127.0.0.1:${port}`, method: 'SendMail', concurrency: 100, warmup: n.mailWarm, count: n.mail }) },
  'queued-c100': {
    label: 'SendMail QUEUED TLS+AUTH W=5, C=100',
    mail: true,
    load: (port, _rep, n) => ({ target: `127.0.0.1:${port}`, method: 'SendMail', concurrency: 100, warmup: n.mailWarm, count: n.mail, queued: true }),
  },
  'validate-c100': {
    label: 'ValidateCode, C=100',
    mail: false,
    load: (port, _rep, n) => ({ target: `127.0.0.1:${port}`, method: 'ValidateCode', concurrency: 100, warmup: n.rpcWarm, count: n.rpc, addresses: 100_000 }),
  },
  'sendcode-c15': sendCode(15),
  'sendcode-c100': sendCode(100),
};

/** SendCode at `concurrency`: every call of every repetition to an address of its own, so no limit refuses one. */
function sendCode(concurrency: number): (typeof SCENARIOS)[AbScenario] {
  return {
    label: `SendCode TLS+AUTH, C=${concurrency}`,
    mail: true,
    load: (port, rep, n) => ({
      target: `127.0.0.1:${port}`,
      method: 'SendCode',
      concurrency,
      warmup: n.mailWarm,
      count: n.mail,
      addresses: Number.MAX_SAFE_INTEGER,
      addressPrefix: `ab${rep}-c${concurrency}-${port}-`,
    }),
  };
}

export async function abScenarios(o: AbOptions): Promise<Ratio[]> {
  const sink = await startNodeSink(o.pki);
  const services: ServiceProc[] = [];
  try {
    for (const party of o.parties) {
      services.push(await startService(sink, { workers: 5, pki: o.pki, ...(party.root !== undefined ? { root: party.root } : {}), ...(party.env !== undefined ? { extraEnv: party.env } : {}) }));
    }
    const scenarios = o.scenarios ?? (Object.keys(SCENARIOS) as AbScenario[]);
    const rows = scenarios.map((s) => o.parties.map((p) => o.row(`ab-${s}-${p.name}`, `${SCENARIOS[s].label}: ${p.name}`, SCENARIOS[s].mail)));
    for (let rep = 0; rep < o.reps; rep++) {
      const order = rep % 2 === 0 ? [0, 1] : [1, 0];
      for (const [i, s] of scenarios.entries()) {
        for (const k of order) {
          const svc = services[k] as ServiceProc;
          o.log(`A/B rep ${rep + 1}: ${s} ${(o.parties[k] as Party).name}`);
          const detach = await o.attach?.(k);
          const m = await measure('loadgen.js', SCENARIOS[s].load(svc.port, rep, o.n), { ...(SCENARIOS[s].mail ? { sink } : {}), serverPid: svc.pid }).finally(() => detach?.());
          (rows[i] as Row[])[k]?.reps.push(m);
        }
      }
    }
    return scenarios.map((s, i) => ratio(`${SCENARIOS[s].label}: ${o.parties[0].name} / ${o.parties[1].name}`, (rows[i] as Row[])[0] as Row, (rows[i] as Row[])[1] as Row));
  } finally {
    for (const svc of services) await svc.stop();
    await sink.stop();
  }
}
