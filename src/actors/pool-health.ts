// How the supervisor keeps track of its connections' health: a connection
// up, down, or crashed (a bug, not a fault of the relay), logged once per
// change and told to whoever listens (`emit`: health for the health
// service, losses for the metrics). The supervisor's machine decides when.
import { MailroomError } from '../errors.js';
import { isSlowDown } from '../smtp/relay-pace.js';
import type { ConnectionReport } from './smtp-connection.js';
import type { ChildError, SupervisorContext, SupervisorEmitted } from './supervisor-context.js';

type Emit = (event: SupervisorEmitted) => void;

const CHILD_ERROR = 'xstate.error.actor.';

export function health(context: SupervisorContext): SupervisorEmitted {
  return { type: 'pool.health', up: context.pool.up, workers: context.options.workers };
}

/** The relay, and why the last dial to it failed: what a caller is told while it cannot be reached. */
export function unreachableError(context: SupervisorContext): MailroomError {
  const { host, port } = context.options.connection.session;
  const last = context.lastDown?.error;
  return new MailroomError('EUNAVAILABLE', `relay ${host}:${port}: ${last?.message ?? 'unreachable'}`, { cause: last, smtp: last?.smtp });
}

export function markReady(context: SupervisorContext, report: Extract<ConnectionReport, { type: 'conn.ready' }>, emit: Emit): void {
  if (!context.pool.ready(report.cid, report.capacity)) return;
  context.log.debug('SMTP connection up', { up: context.pool.up, workers: context.options.workers });
  emit(health(context));
}

export function markDown(context: SupervisorContext, report: Extract<ConnectionReport, { type: 'conn.down' }>, emit: Emit): void {
  const { pool, log, options } = context;
  context.lastDown = { cid: report.cid, error: report.error };
  emit({ type: 'conn.lost', cid: report.cid, code: report.error.code });
  if (pool.down(report.cid, report.refused, report.retryAt)) {
    if (pool.up > 0) log.warn('SMTP connection down', { cid: report.cid, up: pool.up, workers: options.workers, code: report.error.code, reason: report.error.message });
    emit(health(context));
  }
}

export function logPoolDown(context: SupervisorContext): void {
  const down = context.lastDown;
  const fields = { cid: down?.cid, up: 0, workers: context.options.workers, code: down?.error.code, reason: down?.error.message };
  // A relay that hangs up saying "slow down" is doing its job: the pace is cut and the connections dial again; not an outage.
  if (down !== undefined && isSlowDown(down.error)) context.log.warn('pool down: the relay closed every connection asking us to slow down; they dial again at the slower pace', fields);
  else context.log.error('pool down: no SMTP connection is up', fields);
}

const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * A connection actor threw: it is logged and marked down. Returns its id,
 * or undefined when the crash was not a connection's (an invoked helper).
 * Its actor's id is `c3`, or `c3~2` after respawns.
 */
export function noteCrash(context: SupervisorContext, crash: ChildError, emit: Emit): string | undefined {
  const actorId = crash.type.slice(CHILD_ERROR.length);
  const cid = actorId.split('~')[0] ?? actorId;
  const { pool, log, options } = context;
  if (!pool.has(cid)) {
    log.error('supervisor helper actor failed', { actor: actorId, reason: reason(crash.error) });
    return undefined;
  }
  const crashes = pool.crashed(cid);
  log.error('SMTP connection actor crashed', { cid, crashes, reason: reason(crash.error) });
  const error = new MailroomError('EINTERNAL', `connection actor crashed: ${reason(crash.error)}`, { cause: crash.error });
  context.lastDown = { cid, error };
  if (pool.down(cid)) {
    if (pool.up > 0) log.warn('SMTP connection down', { cid, up: pool.up, workers: options.workers, code: error.code, reason: error.message });
    emit(health(context));
  }
  return cid;
}
