// A job is one message on its way through the supervisor. It is settled
// exactly once, whoever gets there first: connection, deadline or shutdown.
import type { MailroomError, SmtpReply } from '../errors.js';
import type { OutgoingMessage } from './compose.js';

export interface Delivered {
  readonly messageId: string;
  readonly reply: SmtpReply;
  /** delivery attempts it took, 1 when the first one succeeded */
  readonly attempts: number;
}

export interface MailJob {
  /** for log lines: unique within this process (the Message-ID is the lasting name) */
  readonly id: string;
  readonly message: OutgoingMessage;
  /** epoch ms after which the caller no longer waits; Infinity for none */
  readonly deadline: number;
  /** epoch ms when the job entered the queue */
  readonly enqueuedAt: number;
  attempts: number;
  /** times it was handed back for free because its connection had gone stale (bounded) */
  staleRequeues: number;
  /** connection of the last failed attempt, avoided on retry when another is idle */
  lastCid: string | undefined;
  readonly settled: () => boolean;
  readonly resolve: (result: Delivered) => void;
  readonly reject: (error: MailroomError) => void;
}

let jobs = 0;

export function createJob(message: OutgoingMessage, deadline: number): { job: MailJob; done: Promise<Delivered> } {
  let settled = false;
  let resolveP!: (r: Delivered) => void;
  let rejectP!: (e: MailroomError) => void;
  const done = new Promise<Delivered>((res, rej) => {
    resolveP = res;
    rejectP = rej;
  });
  const job: MailJob = {
    id: (++jobs).toString(36),
    message,
    deadline,
    enqueuedAt: Date.now(),
    attempts: 0,
    staleRequeues: 0,
    lastCid: undefined,
    settled: () => settled,
    resolve: (r) => {
      if (settled) return;
      settled = true;
      resolveP(r);
    },
    reject: (e) => {
      if (settled) return;
      settled = true;
      rejectP(e);
    },
  };
  return { job, done };
}
