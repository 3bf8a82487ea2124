// The entry to the mail path for every sender (SendMail, OTP codes): compose
// the message, put a job on the supervisor's stream, hand back its outcome.
import { createHash } from 'node:crypto';
import type { Subject } from 'rxjs';
import type { Address } from './address.js';
import { composeMessage, type Draft } from './compose.js';
import { IdempotencyCache } from './idempotency.js';
import { cancellable, createJob, type Delivered, type MailJob } from './job.js';
import { MailroomError } from '../errors.js';
import { messageBytes, type MemoryBudget } from './memory-budget.js';

export interface Sending {
  readonly result: Promise<Delivered>;
  /** The caller went away: a job not yet handed to a connection is never sent. */
  cancel(): void;
}

export class Mailer {
  constructor(
    private readonly jobs$: Subject<MailJob>,
    private readonly from: Address,
    private readonly budget: MemoryBudget,
    private readonly idempotency: IdempotencyCache,
  ) {}

  send(draft: Draft, options: { deadline: number; idempotencyKey?: string }): Sending {
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

  private enqueue(draft: Draft, options: { deadline: number }): Sending {
    // Reserved before composing: a refusal under load costs no MIME work.
    const bytes = messageBytes(Buffer.byteLength(draft.text, 'utf8') + Buffer.byteLength(draft.html, 'utf8'), headerChars(draft));
    this.budget.reserve(bytes);
    let job: MailJob;
    let done: Promise<Delivered>;
    try {
      ({ job, done } = createJob(composeMessage(draft, this.from), options.deadline));
    } catch (err) {
      this.budget.release(bytes);
      throw err;
    }
    const release = (): void => this.budget.release(bytes);
    done.then(release, release);
    this.jobs$.next(job);
    return {
      result: done,
      cancel: () => {
        if (cancellable(job)) job.reject(new MailroomError('EDEADLINE', 'the caller cancelled or its deadline passed'));
      },
    };
  }
}

function headerChars(draft: Draft): number {
  let n = draft.subject.length;
  for (const list of [draft.to, draft.cc, draft.bcc, draft.replyTo]) for (const a of list) n += a.name.length + a.address.length + 4;
  return n;
}

function fingerprint(draft: Draft): string {
  return createHash('sha256').update(JSON.stringify(draft)).digest('base64url');
}
