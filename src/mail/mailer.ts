// The entry to the mail path for every sender (SendMail, OTP codes): compose
// the message, put a job on the supervisor's stream, hand back its outcome.
import { createHash } from 'node:crypto';
import type { Subject } from 'rxjs';
import type { Address } from './address.js';
import { composeMessage, type Draft } from './compose.js';
import type { IdempotentSends } from './idempotency.js';
import { cancellable, createJob, type Delivered, type MailJob } from './job.js';
import { MailroomError } from '../errors.js';
import { messageBytes, type MemoryBudget } from './memory-budget.js';

export interface Sending {
  readonly result: Promise<Delivered>;
  /** The caller went away: a job not yet handed to a connection is never sent. */
  cancel(): void;
}

/** Hears how each message it put on the mail path ended (metrics). */
export interface MailOutcomes {
  delivered(job: MailJob, delivered: Delivered): void;
  failed(job: MailJob, error: MailroomError): void;
}

export interface SendOptions {
  readonly deadline: number;
  readonly idempotencyKey?: string;
  /** the authenticated caller ('' when none): its idempotency keys are its own */
  readonly caller?: string;
}

export class Mailer {
  constructor(
    private readonly jobs$: Subject<MailJob>,
    private readonly from: Address,
    private readonly budget: MemoryBudget,
    private readonly idempotency: IdempotentSends,
    private readonly outcomes: MailOutcomes,
  ) {}

  send(draft: Draft, options: SendOptions): Sending {
    const key = options.idempotencyKey;
    if (key === undefined || key === '') return this.enqueue(draft, options);
    // Only the call that started the send may cancel it; a repeat just waits.
    let own: Sending | undefined;
    let cancelled = false;
    const start = (): Promise<Delivered> => {
      if (cancelled) return Promise.reject(new MailroomError('EDEADLINE', 'the caller cancelled or its deadline passed'));
      own = this.enqueue(draft, options);
      return own.result;
    };
    // Keys are scoped per caller: one caller cannot squat another's key.
    const result = this.idempotency.remember(options.caller ?? '', key, fingerprint(draft), start, options.deadline);
    return {
      result,
      cancel: () => {
        cancelled = true;
        own?.cancel();
      },
    };
  }

  private enqueue(draft: Draft, options: SendOptions): Sending {
    // Reserved before composing: a refusal under load costs no MIME work.
    const bytes = messageBytes(Buffer.byteLength(draft.text, 'utf8') + Buffer.byteLength(draft.html, 'utf8'), headerChars(draft));
    this.budget.reserve(bytes);
    let job: MailJob;
    let done: Promise<Delivered>;
    try {
      ({ job, done } = createJob(composeMessage(draft, this.from), options.deadline, options.caller));
    } catch (err) {
      this.budget.release(bytes);
      throw err;
    }
    const { outcomes } = this;
    done.then(
      (delivered) => {
        this.budget.release(bytes);
        outcomes.delivered(job, delivered);
      },
      (error: MailroomError) => {
        this.budget.release(bytes);
        outcomes.failed(job, error);
      },
    );
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
