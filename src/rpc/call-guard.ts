// Every call's guard: it ends a call whose request has not fully arrived
// `ms` after it began (a client that opens a stream and stops sending must
// not hold the request's buffers for ever); admits a request to the memory
// budget before it is decoded (RESOURCE_EXHAUSTED, never decoded, when it
// does not fit); decodes a large one and hands it to its handler through
// the pacer; and gives the request's share back when the call ends.
import * as grpc from '@grpc/grpc-js';
import type { MailroomError } from '../errors.js';
import type { Ticket } from '../mail/memory-budget.js';
import { Arrival, isTicket, Pacer, type Admission } from './admission.js';
import { rateIdentity } from './rate-cap.js';
import { toServiceError } from './status.js';

/** One call's passage through the guard. */
class GuardedCall {
  private timer: NodeJS.Timeout | undefined;
  private arrival: Arrival | undefined;
  /** the share held while the request arrives, then the request's own */
  private ticket: Ticket | undefined;
  /** the half-close, while a paced message waits for its turn */
  private halfClose: (() => void) | undefined;
  private paced = false;
  private ended = false;
  /** gives back the call's place among the arriving requests, or leaves the line for one */
  private leaveGate: (() => void) | undefined;
  /** whose share of the memory budget the request spends */
  private owner = '';
  readonly call: grpc.ServerInterceptingCall;
  readonly peer: () => string;

  constructor(
    private readonly ms: number,
    private readonly admission: Admission | undefined,
    private readonly pacer: Pacer,
    next: grpc.ServerInterceptingCallInterface,
  ) {
    this.peer = () => next.getPeer();
    this.call = new grpc.ServerInterceptingCall(next, {
      start: (forward) =>
        forward({
          onReceiveMetadata: (metadata, nextMetadata) => this.metadata(metadata, nextMetadata),
          onReceiveMessage: (message, nextMessage) => this.message(message, nextMessage),
          onReceiveHalfClose: (nextHalfClose) => this.halfClosed(nextHalfClose),
          onCancel: () => this.end(),
        }),
      sendStatus: (status, nextStatus) => {
        this.end();
        nextStatus(status);
      },
    });
  }

  private metadata(metadata: grpc.Metadata, next: (metadata: grpc.Metadata) => void): void {
    if (this.admission !== undefined) this.owner = rateIdentity({ metadata, getPeer: () => this.peer() });
    const early = this.admission?.early(this.owner);
    if (early !== undefined && !isTicket(early)) {
      // Its request is never read: the stream stays paused, its body unsent beyond a flow-control window.
      this.refuse(early);
      return;
    }
    this.ticket = early;
    const go = (): void => {
      this.timer = setTimeout(() => {
        this.call.sendStatus({ code: grpc.status.DEADLINE_EXCEEDED, details: `the request did not arrive within ${this.ms} ms` });
      }, this.ms);
      next(metadata);
    };
    if (this.admission === undefined) go();
    else this.leaveGate = this.admission.gate.enter(go);
  }

  private message(message: unknown, next: (message: unknown) => void): void {
    clearTimeout(this.timer);
    if (!(message instanceof Arrival)) {
      next(message);
      return;
    }
    this.arrival = message;
    this.leaveGate?.();
    if (this.admission !== undefined) {
      this.ticket?.release();
      const admitted = this.admission.admit(message.size, this.owner);
      if (!isTicket(admitted)) {
        this.ticket = undefined;
        this.refuse(admitted);
        return;
      }
      this.ticket = admitted;
    }
    if (!message.large) {
      next(message.open());
      return;
    }
    this.paced = true;
    this.pacer.run(() => {
      this.paced = false;
      // A caller gone while it waited is not worth decoding for.
      if (this.ended) return;
      next(message.open());
      this.halfClose?.();
    });
  }

  private halfClosed(next: () => void): void {
    if (this.ended) return;
    if (this.paced) this.halfClose = next;
    else next();
  }

  private refuse(error: MailroomError): void {
    this.call.sendStatus(toServiceError(error) as grpc.StatusObject);
  }

  private end(): void {
    this.ended = true;
    this.leaveGate?.();
    clearTimeout(this.timer);
    this.ticket?.release();
    this.arrival?.drop();
  }
}

/** What sendStatus takes (grpc-js does not export its name). */
type RefusalStatus = Parameters<grpc.ServerInterceptingCallInterface['sendStatus']>[0];

/** grpc-js's own refusal of a request too large, as mailroom's: with mailroom-error ETOOLARGE. */
function withCode(status: RefusalStatus): RefusalStatus {
  if (status.code !== grpc.status.RESOURCE_EXHAUSTED || !status.details.startsWith('Received message') || (status.metadata?.get('mailroom-error').length ?? 0) > 0) return status;
  const metadata = status.metadata?.clone() ?? new grpc.Metadata();
  metadata.set('mailroom-error', 'ETOOLARGE');
  return { ...status, metadata };
}

/**
 * The first interceptor, so that it is handed grpc-js's own call: grpc-js
 * refuses a request over the receive limit from that call, below every
 * interceptor, and the refusal gets the catalogue's code there too
 * (request-limits.test.ts fails if this stops working).
 */
export const catalogueCodes: grpc.ServerInterceptor = (_method, call) => {
  const own = call.sendStatus.bind(call);
  call.sendStatus = (status) => own(withCode(status));
  // The call itself goes on: a wrapper per call would add its work to every call for nothing.
  return call as grpc.ServerInterceptingCall;
};

/** The interceptor: a guard for every call, `admissions` by method path (calls without one are only timed). */
export function callGuard(ms: number, admissions: ReadonlyMap<string, Admission>): grpc.ServerInterceptor {
  const pacer = new Pacer();
  return (method, call) => new GuardedCall(ms, admissions.get(method.path), pacer, call).call;
}
