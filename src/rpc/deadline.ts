import type { ServerUnaryCall } from '@grpc/grpc-js';

/** The caller's deadline as epoch ms; Infinity when the caller set none. */
export function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : Number(d);
  return Number.isFinite(ms) && ms > 0 ? ms : Infinity;
}
