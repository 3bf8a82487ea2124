// The entry to the mail path for every sender (SendMail, OTP codes): compose
// the message, put a job on the supervisor's stream, hand back its outcome.
import type { Subject } from 'rxjs';
import type { Composer, OutgoingMessage } from './compose.js';
import { contentBytes, fingerprint, type Draft } from './draft.js';
import type { IdempotentSends } from './idempotency.js';
import { cancellable, createJob, type Delivered, type MailJob } from './job.js';
import { MailroomError } from '../errors.js';
import type { Lane } from './lane.js';
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

/** What the mail path asks of bounce handling (bounce/sync-mail.ts). */
export interface MailerBounces {
  /** the simulator's answer for a message it takes; undefined: it goes to the relay */
  simulate(message: OutgoingMessage): Promise<Delivered> | undefined;
  /** the relay took a SYNC message */
  sent(job: MailJob, delivered: Delivered): void;
}

export interface SendOptions {
  readonly deadline: number;
  readonly idempotencyKey?: string;
  /** the authenticated caller ('' when none): its idempotency keys are its own */
  readonly caller?: string;
  /** whose turn it takes in its lane (default: the caller) */
  readonly owner?: string;
  readonly lane?: Lane;
}

export class Mailer {
  constructor(
    private readonly jobs$: Subject<MailJob>,
    private readonly composer: Composer,
    private readonly budget: MemoryBudget,
    private readonly idempotency: IdempotentSends,
    private readonly outcomes: MailOutcomes,
    /** the simulator, and status records of what SYNC sends delivered (bounce/) */
    private readonly bounces?: MailerBounces,
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
    const result = this.idempotency.remember(options.caller ?? '', key, fingerprint(draft), start, options.deadline, options.owner);
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
    const bytes = messageBytes(contentBytes(draft), headerChars(draft));
    const owner = options.owner ?? options.caller ?? '';
    this.budget.reserve(bytes, owner);
    let composed: OutgoingMessage | Promise<OutgoingMessage>;
    try {
      composed = this.composer.compose(draft);
    } catch (err) {
      this.budget.release(bytes, owner);
      throw err;
    }
    let job: MailJob | undefined;
    let cancelled = false;
    const submit = (message: OutgoingMessage): Promise<Delivered> => {
      if (cancelled) return Promise.reject(new MailroomError('EDEADLINE', 'the caller cancelled or its deadline passed'));
      const created = createJob(message, options);
      const { outcomes, bounces } = this;
      const simulated = bounces?.simulate(message);
      // The simulator's answer is the outcome: the job never reaches the supervisor, and there is nothing to call off.
      if (simulated === undefined) job = created.job;
      const done = simulated ?? created.done;
      done.then(
        (delivered) => {
          outcomes.delivered(created.job, delivered);
          bounces?.sent(created.job, delivered);
        },
        (error: MailroomError) => outcomes.failed(created.job, error),
      );
      if (simulated === undefined) this.jobs$.next(created.job);
      return done;
    };
    const result = composed instanceof Promise ? composed.then(submit) : submit(composed);
    const release = (): void => this.budget.release(bytes, owner);
    result.then(release, release);
    return {
      result,
      cancel: () => {
        cancelled = true;
        if (job !== undefined && cancellable(job)) job.reject(new MailroomError('EDEADLINE', 'the caller cancelled or its deadline passed'));
      },
    };
  }
}

/** Characters of everything that goes into the header block. */
function headerChars(draft: Draft): number {
  let n = draft.subject.length;
  for (const list of [draft.to, draft.cc, draft.bcc, draft.replyTo]) for (const a of list) n += a.name.length + a.address.length + 4;
  for (const h of draft.headers) n += h.name.length + h.value.length + 4;
  for (const u of draft.listUnsubscribe) n += u.length + 4;
  // each part's own headers: its filename twice (RFC 2231 and RFC 2047), its type and id
  for (const a of draft.attachments) n += 2 * a.filename.length + a.contentType.length + a.contentId.length + 200;
  return n;
}
