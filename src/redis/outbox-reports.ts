// Delivery reports on the Redis outbox (docs/bounces.md): the return path a
// message is found by, SYNC messages' records, and a report applied to the
// status it names as the message machine allows, with the suppressions it
// adds (shared by every replica).
import { MailroomError } from '../errors.js';
import { maskAddresses } from '../lib/mask.js';
import type { MessageState } from '../outbox/lifecycle.js';
import { judgeReport } from '../outbox/reports.js';
import type { BounceRecord, Report, ReportOutcome, ReturnPath, SentMessage } from '../outbox/store.js';
import type { RedisLink } from './client.js';
import type { OutboxStatuses } from './outbox-status.js';
import type { RedisSuppressions } from './suppressions.js';

/** reads and judgements of one report before it gives up (each lost only to another report of the same message) */
const REPORT_TRIES = 8;

export class OutboxReports {
  constructor(
    private readonly link: RedisLink,
    private readonly statuses: OutboxStatuses,
    private readonly suppressions: RedisSuppressions,
  ) {}

  /** What finds a queued message's record by its return path, for as long as it may be reported on (`ttlMs`), and the trace its report links to. */
  async returnPath(member: string, path: ReturnPath, ttlMs: number, trace: string | undefined): Promise<void> {
    const fields: Record<string, string> = { recipients: JSON.stringify(path.recipients), ...(trace !== undefined ? { trace } : {}) };
    await this.link.run('outbox return path', (c) => c.multi().set(this.statuses.bounceKey(path.key), member, 'PX', ttlMs).hset(this.statuses.key('m', member), fields).exec());
  }

  async remember(sent: readonly SentMessage[]): Promise<void> {
    // At once: ioredis pipelines them.
    await Promise.all(sent.map((m) => this.statuses.sent({ ...m, response: maskAddresses(m.response).slice(0, 512) })));
  }

  async report(r: Report): Promise<ReportOutcome> {
    const member = await this.link.run('outbox return path', (c) => c.get(this.statuses.bounceKey(r.key)));
    if (member === null) return { kind: 'unknown' };
    // Read, judge, write only if nothing changed the reports since: two reports for one message on two replicas both count.
    for (let tries = 0; tries < REPORT_TRIES; tries++) {
      const [id, caller, state, recipients, bounces, trace] = await this.statuses.fields(member, 'id', 'caller', 'state', 'recipients', 'bounces', 'trace');
      if (id === undefined || state === undefined) return { kind: 'unknown' };
      const judged = judgeReport(state as MessageState, JSON.parse(recipients ?? '[]') as string[], JSON.parse(bounces ?? '[]') as BounceRecord[], r);
      if (judged === undefined) return { kind: 'unmatched' };
      const write = { bounces: JSON.stringify(judged.bounces), readBounces: bounces ?? '' };
      let moved = await this.statuses.move(id, member, caller ?? '', judged.event, r.at, write);
      // A complaint after a complaint: nothing moves, the report is kept as it came.
      if (moved !== undefined && 'refused' in moved && moved.stale !== true) moved = await this.statuses.move(id, member, caller ?? '', undefined, r.at, write);
      if (moved !== undefined && 'refused' in moved && moved.stale === true) continue;
      if (moved === undefined || 'refused' in moved) return { kind: 'unmatched' };
      await this.statuses.notify([{ cursor: moved.cursor, status: moved.status }]);
      const reason = judged.event === 'COMPLAIN' ? 'complaint' : 'bounce';
      for (const s of judged.suppress) await this.suppressions.add({ digest: s.digest, masked: s.masked, reason, since: r.at, messageId: id });
      return { kind: 'applied', status: moved.status, suppressed: judged.suppress.map((s) => s.digest), ...(trace !== undefined ? { trace } : {}) };
    }
    throw new MailroomError('ESTORE', `a delivery report found its message changed by others ${REPORT_TRIES} times in a row`);
  }
}
