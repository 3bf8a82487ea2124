// What delivery reports cost a sender: SendMail (SYNC at C=15 and C=100,
// QUEUED at C=100) with BOUNCE_DOMAIN set against without, interleaved in
// one run (a SYNC message then gets a status record, every message a return
// path); and what a suppressed refusal costs against a validation error, as
// the two code paths a refused request takes before anything else is done.
import { performance } from 'node:perf_hooks';
import { MailroomError } from '../src/errors.js';
import { RecipientGate } from '../src/bounce/recipient-gate.js';
import { BounceKeys } from '../src/bounce/return-path.js';
import { SuppressionList } from '../src/bounce/suppression-list.js';
import type { OutboxStore, SuppressionEntry } from '../src/outbox/store.js';
import type { SendEmailRequest__Output } from '../src/generated/mail/SendEmailRequest.js';
import { validateSendEmail, type MailLimits } from '../src/rpc/validate.js';
import { abScenarios, type AbOptions } from './ab.js';
import type { Ratio, Target } from './report.js';
import { createLogger } from '../src/log.js';
import { median } from './common.js';

export interface BounceBenchOptions extends Pick<AbOptions, 'reps' | 'pki' | 'n' | 'log' | 'row' | 'scenarios'> {}

const LIMITS: MailLimits = { maxSubjectChars: 998, maxBodyBytes: 1_048_576, maxRecipients: 50, maxDisplayNameChars: 256, maxMessageBytes: 10_485_760, maxAttachments: 20, maxBatch: 500 };

function request(to: string): SendEmailRequest__Output {
  return {
    to,
    subject: 'Your receipt',
    body: 'Thanks for your order.',
    html: '',
    cc: [],
    bcc: [],
    reply_to: '',
    idempotency_key: '',
    delivery: 'DELIVERY_SYNC',
    send_at: null,
    attachments: [],
    headers: [],
    list_unsubscribe: '',
    priority: 'PRIORITY_NORMAL',
  };
}

/** A store that answers the list's load with `entries` (the gate reads only its memory after). */
function listStore(entries: readonly SuppressionEntry[]): OutboxStore {
  const store: Partial<OutboxStore> = {
    onSuppression: () => () => undefined,
    suppressions: (after: string) => Promise.resolve(after === '' ? [...entries] : []),
  };
  return store as OutboxStore;
}

/** ns per refused request for `refuse`, over `n` calls after as many of warm-up; each must throw `code`. */
function timeRefusals(refuse: () => void, code: string, n: number): number {
  const once = (): void => {
    try {
      refuse();
    } catch (err) {
      if ((err as MailroomError).code === code) return;
      throw err;
    }
    throw new Error(`not refused ${code}`);
  };
  for (let i = 0; i < n; i++) once();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) once();
  return ((performance.now() - t0) * 1e6) / n;
}

export async function bounceScenarios(o: BounceBenchOptions): Promise<{ ratios: Ratio[]; targets: Target[]; extra: [string, string][] }> {
  const ratios = await abScenarios({ ...o, parties: [{ name: 'BOUNCE_DOMAIN set', env: { BOUNCE_DOMAIN: 'bounces.example.com' } }, { name: 'without' }], scenarios: o.scenarios ?? ['send-c15', 'send-c100', 'queued-c100'] });
  const targets: Target[] = ratios.map((r) => ({ name: `${r.name}: throughput with BOUNCE_DOMAIN / without`, figure: `${r.throughput.toFixed(2)}× (reps ${r.perRep.throughput.join(', ')})`, limit: '≥ 0.95×', holds: r.throughput >= 0.95 }));

  const keys = new BounceKeys(Buffer.alloc(32, 7));
  const list = new SuppressionList(listStore(Array.from({ length: 10_000 }, (_, i) => ({ digest: keys.digest(`gone${i}@example.com`), masked: 'g***@example.com', reason: 'bounce', since: 0, messageId: '' }))), createLogger({ level: 'error', format: 'json', silent: true }));
  await list.load(keys);
  const gate = new RecipientGate(list, () => undefined);
  const suppressed = request('gone42@example.com');
  const invalid = request('gone42@@example.com');
  const suppressedNs: number[] = [];
  const invalidNs: number[] = [];
  for (let rep = 0; rep < o.reps; rep++) {
    // interleaved, the order turned each repetition
    const runs = [() => suppressedNs.push(timeRefusals(() => gate.check(validateSendEmail(suppressed, LIMITS)), 'ESUPPRESSED', 50_000)), () => invalidNs.push(timeRefusals(() => validateSendEmail(invalid, LIMITS), 'EINVALID', 50_000))];
    for (const run of rep % 2 === 0 ? runs : runs.reverse()) run();
  }
  const s = median(suppressedNs);
  const v = median(invalidNs);
  o.log(`refusals: suppressed ${s.toFixed(0)} ns, invalid address ${v.toFixed(0)} ns`);
  targets.push({
    name: 'a suppressed refusal / a validation error (validation, then the list of 10,000; in-process)',
    figure: `${(s / v).toFixed(2)}× (${s.toFixed(0)} ns, reps ${suppressedNs.map((x) => x.toFixed(0)).join(', ')} / ${v.toFixed(0)} ns, reps ${invalidNs.map((x) => x.toFixed(0)).join(', ')})`,
    limit: '≤ 1.00×',
    holds: s <= v,
  });
  return { ratios, targets, extra: [] };
}

