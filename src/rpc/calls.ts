// Every gRPC call still to be answered. A call is answered exactly once (a
// second answer does nothing), and none is left hanging: once calls are
// refused (a root actor failed, or the service stopped) every open call and
// every new one gets that refusal at once.
//
// The open calls are an intrusive doubly linked list, not a Set: a table
// that gains and loses an entry for every call is the pattern that kept
// finished jobs alive through scavenges (see job-ledger.ts).
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { toMailroomError, type MailroomError } from '../errors.js';
import { toServiceError } from './status.js';

interface CallNode {
  prev: CallNode | undefined;
  next: CallNode | undefined;
  refuse(status: Partial<grpc.StatusObject>): void;
}

export class Calls {
  private first: CallNode | undefined;
  private refusal: Partial<grpc.StatusObject> | undefined;

  /** `log` hears of every unexpected error a call is answered with (INTERNAL, whose caller sees only a generic message). */
  constructor(private readonly log: Logger) {}

  /** Opens a call; undefined when calls are refused, in which case it has been answered already. */
  open<T>(callback: grpc.sendUnaryData<T>): OpenCall<T> | undefined {
    if (this.refusal !== undefined) {
      callback(this.refusal as grpc.ServiceError);
      return undefined;
    }
    const call = new OpenCall<T>(this, callback, this.log);
    call.next = this.first;
    if (this.first !== undefined) this.first.prev = call;
    this.first = call;
    return call;
  }

  /** Answers every open call with `error`, and every later one. */
  refuse(error: MailroomError): void {
    this.refusal ??= toServiceError(error);
    for (let call = this.first; call !== undefined; call = this.first) call.refuse(this.refusal);
  }

  /** @internal */
  unlink(call: CallNode): void {
    if (call.prev !== undefined) call.prev.next = call.next;
    else if (this.first === call) this.first = call.next;
    if (call.next !== undefined) call.next.prev = call.prev;
    call.prev = undefined;
    call.next = undefined;
  }
}

export class OpenCall<T> implements CallNode {
  prev: CallNode | undefined;
  next: CallNode | undefined;
  private done = false;

  constructor(
    private readonly calls: Calls,
    private readonly callback: grpc.sendUnaryData<T>,
    private readonly log: Logger,
  ) {}

  ok(value: T): void {
    if (!this.finish()) return;
    this.callback(null, value);
  }

  /** Answers with the gRPC status the error maps to; returns that status (for the log). */
  fail(err: unknown): Partial<grpc.StatusObject> {
    const error = toMailroomError(err);
    if (error.code === 'EINTERNAL') {
      const cause = error.cause instanceof Error ? error.cause : error;
      this.log.error('unexpected error', { reason: cause.message, stack: cause.stack });
    }
    const status = toServiceError(error);
    if (this.finish()) this.callback(status as grpc.ServiceError);
    return status;
  }

  refuse(status: Partial<grpc.StatusObject>): void {
    if (this.finish()) this.callback(status as grpc.ServiceError);
  }

  private finish(): boolean {
    if (this.done) return false;
    this.done = true;
    this.calls.unlink(this);
    return true;
  }
}
