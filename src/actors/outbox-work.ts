// The supervisor's hands on the outbox store: a long-lived child that runs
// the store's calls in the order the supervisor asks for them and reports
// what comes back. Accepting and cancelling answer their callers' promises
// directly (one event in, the answers out); claims report the jobs they
// made; recorded outcomes report nothing (the store retries them until they
// are written). The store groups the calls of one turn into one commit.
import { fromCallback } from 'xstate';
import type { Logger } from 'winston';
import { MailroomError, toMailroomError } from '../errors.js';
import { createJob, type MailJob } from '../mail/job.js';
import type { OutboxRequest } from '../outbox/requests.js';
import type { Change, Claimed, OutboxStore } from '../outbox/store.js';
import type { SupervisorEvent } from './supervisor-context.js';

/** What the supervisor asks of its outbox child. */
export type OutboxWork =
  | { readonly type: 'requests'; readonly requests: readonly OutboxRequest[]; readonly now: number }
  | { readonly type: 'claim'; readonly n: number; readonly now: number }
  | { readonly type: 'record'; readonly changes: readonly Change[] }
  | { readonly type: 'hasten'; readonly now: number }
  | { readonly type: 'housekeep'; readonly now: number; readonly retentionMs: number };

/** most messages one housekeeping pass fails for their age */
const EXPIRE_SLICE = 1000;

function storeError(err: unknown): MailroomError {
  const error = toMailroomError(err);
  return error.code === 'EINTERNAL' ? new MailroomError('EUNAVAILABLE', 'the outbox did not answer', { cause: err }) : error;
}

export const outboxWorker = fromCallback<OutboxWork, { store: OutboxStore | undefined; log: Logger }>(({ input: { store, log }, sendBack, receive }) => {
  const report = (event: SupervisorEvent): void => sendBack(event);
  receive((work) => {
    // Without an outbox nothing is asked of it (the supervisor refuses queued sends).
    if (store === undefined) return;
    switch (work.type) {
      case 'requests': {
        const accepts = work.requests.filter((r) => r.type === 'accept');
        if (accepts.length > 0) {
          store.accept(
            accepts.map((r) => r.message),
            work.now,
          ).then(
            (answers) => {
              let dueAt: number | undefined;
              answers.forEach((answer, i) => {
                if (answer.kind === 'accepted') dueAt = Math.min(dueAt ?? answer.status.nextAttemptAt, answer.status.nextAttemptAt);
                accepts[i]?.reply.resolve(answer);
              });
              if (dueAt !== undefined) report({ type: 'outbox.accepted', dueAt });
            },
            (err: unknown) => {
              for (const r of accepts) r.reply.reject(storeError(err));
            },
          );
        }
        for (const r of work.requests) {
          if (r.type === 'cancel') store.cancel(r.id, r.caller, work.now).then(r.reply.resolve, (err: unknown) => r.reply.reject(storeError(err)));
        }
        return;
      }
      case 'claim':
        store.claim(work.n, work.now).then(
          ({ claimed, nextDue }) => report({ type: 'outbox.claimed', claimed, nextDue }),
          (err: unknown) => report({ type: 'outbox.unclaimed', error: storeError(err) }),
        );
        return;
      case 'record':
        store.record(work.changes).catch((err: unknown) => log.error('outbox: outcomes not recorded', { reason: storeError(err).message }));
        return;
      case 'hasten':
        store.hasten(work.now).then(
          (at) => report({ type: 'outbox.due', at }),
          () => undefined,
        );
        return;
      case 'housekeep':
        store
          .expire(work.now, EXPIRE_SLICE)
          .then(async (expired) => {
            if (expired > 0) log.info('outbox: messages expired', { expired });
            await store.purge(work.now - work.retentionMs);
          })
          .catch((err: unknown) => log.warn('outbox: housekeeping failed', { reason: storeError(err).message }));
        return;
    }
  });
});

/** Claimed messages as jobs: no caller waits on them, and they have no deadline but their expiry. */
export function claimedJobs(claimed: readonly Claimed[]): MailJob[] {
  return claimed.map((c) => {
    const { job } = createJob({ messageId: c.id, envelope: c.envelope, raw: c.raw }, Infinity, c.caller, { expiresAt: c.expiresAt });
    job.attempts = c.attempts;
    return job;
  });
}
