// The order in which connections take work (docs/operating.md, "Lanes"): a
// code is worth nothing after a minute, a digest can wait an hour. Lower
// goes first; within a lane, callers take turns (job-ledger.ts, and the
// outbox's claim).
export const LANES = ['code', 'high', 'normal', 'bulk'] as const;
export type LaneName = (typeof LANES)[number];
export type Lane = 0 | 1 | 2 | 3;

export const CODE_LANE: Lane = 0;
export const HIGH_LANE: Lane = 1;
export const NORMAL_LANE: Lane = 2;
export const BULK_LANE: Lane = 3;

/** A SendEmailRequest's priority as the wire spells it. */
export type WirePriority = 'PRIORITY_NORMAL' | 'PRIORITY_HIGH' | 'PRIORITY_BULK';

/**
 * The lane of a SendMail: a SYNC call has a person (or a process) waiting
 * on its answer and goes with HIGH, unless it says it is BULK; a queued one
 * goes where its priority says.
 */
export function laneOf(priority: WirePriority, sync: boolean): Lane {
  if (priority === 'PRIORITY_BULK') return BULK_LANE;
  if (priority === 'PRIORITY_HIGH' || sync) return HIGH_LANE;
  return NORMAL_LANE;
}

export function isLane(n: number): n is Lane {
  return n === 0 || n === 1 || n === 2 || n === 3;
}
