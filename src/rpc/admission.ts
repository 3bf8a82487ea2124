// What happens to a request between the wire and its handler.
//
// Decoding: a request that fails to decode becomes an Undecodable (the
// handler answers INVALID_ARGUMENT, where grpc-js would say INTERNAL). A
// request of a method with an admission check (SendMail), and any large one,
// is left undecoded as an Arrival: the call's guard (server.ts) admits it
// first, so a request refused for want of memory is never decoded into
// strings that, a megabyte each, would live until a full GC.
//
// Pacing: grpc-js deserializes every request that completed in one read in
// one microtask run. A large request is therefore decoded and handled
// (validation and MIME: milliseconds a megabyte) one per event-loop turn, so
// a flood of them does not hold the loop (docs/decisions.md).
import type { MailroomError } from '../errors.js';
import type { Ticket } from '../mail/memory-budget.js';
import { Deque } from '../lib/deque.js';

export class Undecodable {
  constructor(
    readonly reason: string,
    /** the string field whose bytes are not UTF-8, when that is why */
    readonly notUtf8?: string,
  ) {}
}

/** A method's admission check: a ticket on a share of the memory budget, or the refusal. */
export interface Admission {
  /** At a call's headers, before its request arrives (undefined: nothing to hold); `owner`: whose share it spends (rate-cap.ts's identity). */
  early(owner: string): Ticket | MailroomError | undefined;
  /** Once the request's `bytes` encoded bytes are in. */
  admit(bytes: number, owner: string): Ticket | MailroomError;
  /** how many of its requests may be arriving at once */
  readonly gate: ArrivalGate;
}

export function isTicket(t: Ticket | MailroomError): t is Ticket {
  return 'release' in t;
}

/** requests of at least this many encoded bytes are decoded and handled one per turn */
export const PACED_BYTES = 64 * 1024;

type Decode = (bytes: Buffer) => unknown;
/** the first string field of a request whose bytes are not UTF-8 */
type Utf8Check = (bytes: Buffer) => string | undefined;

/** A request as it arrived, still undecoded. */
export class Arrival {
  private bytes: Buffer | undefined;
  readonly size: number;

  constructor(
    bytes: Buffer,
    private readonly decode: Decode,
    private readonly utf8: Utf8Check,
  ) {
    this.bytes = bytes;
    this.size = bytes.length;
  }

  get large(): boolean {
    return this.size >= PACED_BYTES;
  }

  /** The decoded request (or an Undecodable); the bytes are let go. */
  open(): unknown {
    const bytes = this.bytes;
    this.bytes = undefined;
    return bytes === undefined ? new Undecodable('the request was opened twice') : decodeOrExplain(this.decode, this.utf8, bytes);
  }

  /** The call ended without it: the bytes are let go. */
  drop(): void {
    this.bytes = undefined;
  }
}

function decodeOrExplain(decode: Decode, utf8: Utf8Check, bytes: Buffer): unknown {
  const notUtf8 = utf8(bytes);
  if (notUtf8 !== undefined) return new Undecodable('a string is not UTF-8', notUtf8);
  try {
    return decode(bytes);
  } catch (err) {
    return new Undecodable((err as Error).message);
  }
}

/** A deserializer that never throws, refuses strings that are not UTF-8, and leaves a request to be admitted, or a large one, undecoded. */
export function deferring(decode: Decode, utf8: Utf8Check, admitted: boolean): (bytes: Buffer) => unknown {
  return (bytes) => (admitted || bytes.length >= PACED_BYTES ? new Arrival(bytes, decode, utf8) : decodeOrExplain(decode, utf8, bytes));
}

/**
 * At most `limit` requests arriving at once; the calls beyond it wait at
 * their headers, their streams paused (a flow-control window each), and go
 * on in order as places free. grpc-js buffers a request whole before anyone
 * sees it, so without this one connection's 100 streams of 1 MB arrive
 * together and are reassembled in one turn of the loop: a long stall, and
 * all of them in memory before the budget could refuse any.
 */
export class ArrivalGate {
  private arriving = 0;
  private readonly waiting = new Deque<{ go: (() => void) | undefined }>();

  constructor(readonly limit: number) {}

  /** `go` runs now or once a place is free; the function returned gives the place back, or leaves the line. */
  enter(go: () => void): () => void {
    if (this.arriving < this.limit) {
      this.arriving++;
      go();
      return this.leaver();
    }
    const place: { go: (() => void) | undefined } = { go };
    this.waiting.push(place);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      if (place.go !== undefined) place.go = undefined;
      else this.leave();
    };
  }

  private leaver(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.leave();
    };
  }

  private leave(): void {
    this.arriving--;
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
      const go = next.go;
      if (go === undefined) continue; // left the line while it waited
      next.go = undefined;
      this.arriving++;
      go();
      return;
    }
  }
}

/** Runs queued work one item per event-loop turn (setImmediate), in order. */
export class Pacer {
  private readonly queue: (() => void)[] = [];
  private scheduled = false;

  run(work: () => void): void {
    this.queue.push(work);
    if (!this.scheduled) this.next();
  }

  private next(): void {
    this.scheduled = true;
    setImmediate(() => {
      this.queue.shift()?.();
      if (this.queue.length > 0) this.next();
      else this.scheduled = false;
    });
  }
}
