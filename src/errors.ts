// One catalogue of error codes. `transient` decides retries: a transient
// failure may succeed on another connection or later; a permanent one fails
// the call at once. The gRPC status for each code is chosen in src/rpc only.

export const ERROR_CATALOGUE = {
  ECONFIG: { transient: false, summary: 'invalid configuration' },
  EINVALID: { transient: false, summary: 'invalid request' },
  ECONNECTION: { transient: true, summary: 'connection to the SMTP relay failed or was lost' },
  ETIMEDOUT: { transient: true, summary: 'the SMTP relay did not answer in time' },
  ESTALE: { transient: true, summary: 'the pooled connection was gone before the relay saw any of the message' },
  ETLS: { transient: true, summary: 'TLS with the SMTP relay failed' },
  EAUTH: { transient: true, summary: 'the SMTP relay refused our credentials' },
  ESMTP_TRANSIENT: { transient: true, summary: 'the SMTP relay answered with a temporary failure (4xx)' },
  ESMTP_PERMANENT: { transient: false, summary: 'the SMTP relay refused the message (5xx)' },
  ERECIPIENT: { transient: false, summary: 'the SMTP relay refused a recipient (5xx)' },
  EQUEUEFULL: { transient: false, summary: 'the send queue is full' },
  ETOOLARGE: { transient: false, summary: 'the request is larger than the service takes' },
  ERATELIMIT: { transient: false, summary: 'too many requests' },
  EDEADLINE: { transient: false, summary: "the caller's deadline passed" },
  ESHUTDOWN: { transient: false, summary: 'the service is shutting down' },
  EUNAVAILABLE: { transient: false, summary: 'the SMTP relay is unavailable' },
  ESTORE: { transient: false, summary: 'a store (the outbox, or Redis) cannot answer now' },
  EIDEMPOTENCY: { transient: false, summary: 'idempotency key reused with a different request' },
  ENOTFOUND: { transient: false, summary: 'no such message' },
  ESUPPRESSED: { transient: false, summary: 'a recipient is on the suppression list (a hard bounce, a complaint, or by hand)' },
  ECANCEL: { transient: false, summary: 'the message can no longer be cancelled' },
  EEXPIRED: { transient: false, summary: 'the message was not delivered within OUTBOX_MAX_AGE_SECONDS' },
  EKEYSFULL: { transient: false, summary: 'the idempotency keys fill their memory, every one still inside its window' },
  EUNAUTHENTICATED: { transient: false, summary: 'the caller sent no credentials, or unknown ones' },
  EFORBIDDEN: { transient: false, summary: 'the caller may not call this service' },
  EINTERNAL: { transient: false, summary: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** A parsed SMTP reply: basic code, optional RFC 3463 enhanced code, text. */
export interface SmtpReply {
  readonly code: number;
  readonly enhanced: string | undefined;
  readonly text: string;
}

export interface ErrorDetails {
  readonly cause?: unknown;
  readonly smtp?: SmtpReply;
  readonly retryAfterSeconds?: number;
}

export class MailroomError extends Error {
  readonly code: ErrorCode;
  readonly smtp: SmtpReply | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'MailroomError';
    this.code = code;
    this.smtp = details.smtp;
    this.retryAfterSeconds = details.retryAfterSeconds;
  }

  get transient(): boolean {
    return ERROR_CATALOGUE[this.code].transient;
  }
}

export function isMailroomError(err: unknown): err is MailroomError {
  return err instanceof MailroomError;
}

/** Anything thrown that is not ours becomes EINTERNAL, keeping the original as cause. */
export function toMailroomError(err: unknown): MailroomError {
  if (err instanceof MailroomError) return err;
  return new MailroomError('EINTERNAL', ERROR_CATALOGUE.EINTERNAL.summary, { cause: err });
}
