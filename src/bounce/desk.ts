// Where delivery reports land, from the bounce listener or the simulator:
// the report is parsed, the message it is about found by its return path's
// token (which must verify: nobody else can mint one), each recipient it
// names matched by digest, and the store applies it (state, bounces, the
// suppressions it adds) in one commit. A report that fails any of this
// changes nothing: a metric counts why, and a debug line says so, never
// what the report held.
import type { Logger } from 'winston';
import { maskAddresses } from '../lib/mask.js';
import type { OutboxStore, ReportItem } from '../outbox/store.js';
import { parseReport } from './report.js';
import { traceReport } from '../lib/tracing.js';
import { isSimulated, type ReturnPaths } from './return-path.js';

/** what became of a delivery report the bounce listener (or the simulator) took in (a metric's label) */
export type ReportOutcome = 'hard' | 'soft' | 'complaint' | 'ignored_unparsed' | 'ignored_token' | 'ignored_unknown' | 'ignored_unmatched' | 'ignored_store';

export interface ReportCounter {
  report(outcome: ReportOutcome): void;
}

export type Taken = 'applied' | 'unparsed' | 'token' | 'unknown' | 'unmatched' | 'store';

export class BounceDesk {
  constructor(
    private readonly store: OutboxStore,
    private readonly paths: ReturnPaths,
    private readonly metrics: ReportCounter,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes in one report. `recipients`: the envelope recipients it came to
   * (b+<token>@BOUNCE_DOMAIN for a bounce; a feedback loop's address for a
   * complaint, whose token is then read from the original's return path).
   * `simulated`: from the simulator, it suppresses nothing.
   */
  async receive(recipients: readonly string[], raw: Buffer | string, simulated = false): Promise<Taken> {
    const report = await parseReport(raw);
    if (report === undefined) return this.ignored('unparsed');
    const key = [...recipients, ...report.returnPaths].map((a) => this.paths.keyOfAddress(a)).find((k) => k !== undefined);
    const keys = this.paths.ready;
    if (key === undefined || keys === undefined) return this.ignored('token');
    const digests = report.recipients.map((r) => (r.address === undefined ? undefined : keys.digest(r.address)));
    const items: ReportItem[] = report.recipients.map((r, i) => ({ digest: digests[i], kind: r.kind, status: r.status, diagnostic: r.diagnostic }));
    const suppress = simulated
      ? []
      : report.recipients.flatMap((r, i) => {
          const digest = digests[i];
          return r.kind !== 'soft' && r.address !== undefined && digest !== undefined && !isSimulated(r.address) ? [{ digest, masked: maskAddresses(r.address) }] : [];
        });
    let outcome;
    try {
      outcome = await this.store.report({ key, items, at: this.now(), suppress, suppressRedacted: !simulated });
    } catch (err) {
      this.log.warn('bounces: a report could not be stored; the sender is asked to try again', { reason: (err as Error).message });
      this.metrics.report('ignored_store');
      throw err;
    }
    if (outcome.kind !== 'applied') return this.ignored(outcome.kind);
    for (const item of items) this.metrics.report(item.kind);
    traceReport(outcome.trace, outcome.status.state, items.map((i) => i.kind));
    this.log.info('bounces: a delivery report', { messageId: outcome.status.id, state: outcome.status.state, kinds: items.map((i) => i.kind).join(','), suppressed: outcome.suppressed.length, simulated });
    return 'applied';
  }

  private ignored(why: Exclude<Taken, 'applied' | 'store'>): Taken {
    this.metrics.report(`ignored_${why}`);
    this.log.debug('bounces: a report changed nothing', { why });
    return why;
  }
}

