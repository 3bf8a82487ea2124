// The one table from error codes to gRPC status codes. Unknown errors become
// INTERNAL with a generic message: details of our own faults stay in the log.
import * as grpc from '@grpc/grpc-js';
import { ERROR_CATALOGUE, toMailroomError, type ErrorCode } from '../errors.js';
import { formatReply } from '../smtp/reply.js';

export const STATUS_BY_CODE: Readonly<Record<ErrorCode, grpc.status>> = {
  ECONFIG: grpc.status.INTERNAL,
  EINVALID: grpc.status.INVALID_ARGUMENT,
  ECONNECTION: grpc.status.UNAVAILABLE,
  ETIMEDOUT: grpc.status.UNAVAILABLE,
  ESTALE: grpc.status.UNAVAILABLE,
  ETLS: grpc.status.UNAVAILABLE,
  EAUTH: grpc.status.UNAVAILABLE,
  ESMTP_TRANSIENT: grpc.status.UNAVAILABLE,
  ESMTP_PERMANENT: grpc.status.FAILED_PRECONDITION,
  ERECIPIENT: grpc.status.INVALID_ARGUMENT,
  EQUEUEFULL: grpc.status.RESOURCE_EXHAUSTED,
  ETOOLARGE: grpc.status.RESOURCE_EXHAUSTED,
  ERATELIMIT: grpc.status.RESOURCE_EXHAUSTED,
  EDEADLINE: grpc.status.DEADLINE_EXCEEDED,
  ESHUTDOWN: grpc.status.UNAVAILABLE,
  EUNAVAILABLE: grpc.status.UNAVAILABLE,
  ESTORE: grpc.status.UNAVAILABLE,
  EIDEMPOTENCY: grpc.status.FAILED_PRECONDITION,
  ENOTFOUND: grpc.status.NOT_FOUND,
  ESUPPRESSED: grpc.status.FAILED_PRECONDITION,
  ECANCEL: grpc.status.FAILED_PRECONDITION,
  EEXPIRED: grpc.status.DEADLINE_EXCEEDED,
  EKEYSFULL: grpc.status.RESOURCE_EXHAUSTED,
  EUNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  EFORBIDDEN: grpc.status.PERMISSION_DENIED,
  EINTERNAL: grpc.status.INTERNAL,
};

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const e = toMailroomError(err);
  const metadata = new grpc.Metadata();
  metadata.set('mailroom-error', e.code);
  if (e.retryAfterSeconds !== undefined) metadata.set('retry-after', String(e.retryAfterSeconds));
  if (e.smtp !== undefined) {
    metadata.set('smtp-code', String(e.smtp.code));
    if (e.smtp.enhanced !== undefined) metadata.set('smtp-enhanced-code', e.smtp.enhanced);
  }
  let details = e.code === 'EINTERNAL' ? ERROR_CATALOGUE.EINTERNAL.summary : e.message;
  if (e.smtp !== undefined && !details.includes(String(e.smtp.code))) details += ` (SMTP ${formatReply(e.smtp)})`;
  if (e.retryAfterSeconds !== undefined) details += `; retry after ${e.retryAfterSeconds} s`;
  return { code: STATUS_BY_CODE[e.code], details, metadata };
}
