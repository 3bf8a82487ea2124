// The supervisor's long-lived helpers that only listen: the job stream,
// turned into events in its mailbox (what arrives in one go, the calls of
// one network read, travels as one event, since each event costs a whole
// xstate step), and a ticker.
import { fromCallback } from 'xstate';
import type { Observable } from 'rxjs';
import type { MailJob } from '../mail/job.js';
import { fail } from './dispatch.js';
import type { SupervisorEvent } from './supervisor-context.js';

/**
 * Items of `source` handed on in batches: those of one turn of the event
 * loop's I/O together (all the calls one read of every socket brought), at
 * its check phase. A microtask batch held only the calls of one socket read
 * that grpc-js handled in one tick: under load most mails were an event each.
 */
function batched<T>(source: Observable<T>, flush: (items: T[]) => void) {
  let batch: T[] | undefined;
  return source.subscribe((item) => {
    if (batch !== undefined) {
      batch.push(item);
      return;
    }
    const items = [item];
    batch = items;
    setImmediate(() => {
      batch = undefined;
      flush(items);
    });
  });
}

export const feed = fromCallback<SupervisorEvent, { jobs$: Observable<MailJob> }>(({ input, sendBack }) => {
  let stopped = false;
  const jobs = batched(input.jobs$, (items) => {
    // A batch that outlived the supervisor is answered, not dropped.
    if (stopped) for (const j of items) fail(j, 'ESHUTDOWN', 'the service is shutting down');
    else sendBack({ type: 'jobs.submitted', jobs: items });
  });
  return () => {
    stopped = true;
    jobs.unsubscribe();
  };
});

export const ticker = fromCallback<SupervisorEvent, { ms: number; event: SupervisorEvent }>(({ input, sendBack }) => {
  const timer = setInterval(() => sendBack(input.event), input.ms);
  timer.unref();
  return () => clearInterval(timer);
});
