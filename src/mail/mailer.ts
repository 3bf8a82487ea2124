// The entry to the mail path for every sender (SendMail, OTP codes): compose
// the message, put a job on the supervisor's stream, hand back its outcome.
import { createHash } from 'node:crypto';
import type { Subject } from 'rxjs';
import type { Address } from './address.js';
import { composeMessage, type Draft } from './compose.js';
import { IdempotencyCache } from './idempotency.js';
import { cancellable, createJob, type Delivered, type MailJob } from './job.js';
import { MailroomError } from '../errors.js';

export interface Sending {
  readonly result: Promise<Delivered>;
  /** The caller went away: a job not yet handed to a connection is never sent. */
  cancel(): void;
}

export class Mailer {
  constructor(
    private readonly jobs$: Subject<MailJob>,
    private readonly from: Address,
    private readonly idempotency: IdempotencyCache,
  ) {}

  /** `requestBytes`: what the caller's request holds in memory while the mail is under way (see MailJob.bytes). */
  send(draft: Draft, options: { deadline: number; idempotencyKey?: string; requestBytes?: number }): Sending {
    const key = options.idempotencyKey;
    if (key === undefined || key === '') return this.enqueue(draft, options);
    let own: Sending | undefined;
    const { result } = this.idempotency.run(key, fingerprint(draft), () => {
      own = this.enqueue(draft, options);
      return own.result;
    });
    // Only the call that started the send may cancel it; a repeat just waits.
    return { result, cancel: () => own?.cancel() };
  }

  private enqueue(draft: Draft, options: { deadline: number; requestBytes?: number }): Sending {
    const { job, done } = createJob(composeMessage(draft, this.from), options.deadline, options.requestBytes);
    this.jobs$.next(job);
    return {
      result: done,
      cancel: () => {
        if (cancellable(job)) job.reject(new MailroomError('EDEADLINE', 'the caller cancelled or its deadline passed'));
      },
    };
  }
}

function fingerprint(draft: Draft): string {
  return createHash('sha256').update(JSON.stringify(draft)).digest('base64url');
}
