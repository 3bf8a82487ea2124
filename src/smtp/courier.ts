// What holds a connection's session while it is authenticated: it reports
// the session's loss, performs the deliveries asked for (one outcome each),
// and, near the session's cap, dials its successor so that recycling costs
// no round trips: when the session is spent it is handed over at once (the
// old one says QUIT in the background), and the connection goes on without
// a gap: a fresh dial is four to five round trips, a share of the
// throughput at a relay's distance (docs/decisions.md). It destroys whatever it holds when
// the connection leaves its authenticated states for any reason.
//
// The cost of the overlap: while a successor is dialled and waits, the
// connection holds two sessions; the pool reaches WORKERS + 1 connections
// for a moment now and then (caps are drawn at random, so rarely more).
import { toMailroomError, type MailroomError, type SmtpReply } from '../errors.js';
import type { MailJob } from '../mail/job.js';
import { Deliveries } from './delivery.js';
import { dial } from './dial.js';
import type { SessionOptions } from './options.js';
import type { SmtpSession } from './session.js';
import { Pace } from './pace.js';

/** What the courier needs beyond dialling: the keepalive, and the bounds of the pipeline's depth. */
export interface CourierOptions extends SessionOptions {
  readonly keepaliveMs: number;
  /** whole messages in flight at no distance, and at least */
  readonly pipelineDepth: number;
  /** and at most, however far the relay */
  readonly pipelineDepthMax: number;
}

/** What the connection asks of its courier. */
export type CourierRequest =
  | { type: 'deliver'; job: MailJob }
  /** dial the successor session now (the current one nears its cap) */
  | { type: 'predial' }
  /** the session is spent: hand over to the successor, or say there is none */
  | { type: 'handover' };

/** What the courier reports. */
export type CourierReport =
  | { type: 'LOST'; error: MailroomError }
  /**
   * the relay took the message (250 to its final dot or BDAT LAST); `depth`:
   * whole messages to keep in flight now (see Pace). The outcome that leaves
   * nothing in flight comes one event-loop turn late: a close the relay sent
   * right behind it is seen (LOST) first.
   */
  | { type: 'SENT'; job: MailJob; reply: SmtpReply; depth: number }
  | { type: 'SEND_FAILED'; job: MailJob; error: MailroomError }
  /** the successor is the session now */
  | { type: 'HANDED_OVER'; session: SmtpSession }
  /** no successor to hand over to (none dialled, its dial failed, or it waited too long): re-dial as before */
  | { type: 'NO_SUCCESSOR'; error?: MailroomError };

interface Successor {
  /** settles once the dial does, either way */
  readonly dialled: Promise<void>;
  session: SmtpSession | undefined;
  /** why the dial failed, or why the session was lost while it waited */
  error: MailroomError | undefined;
  /** lets go of a successor that waited idle past the keepalive: the relay may have dropped it meanwhile */
  expiry: NodeJS.Timeout | undefined;
}

/** The session the courier sends on, with what it attached to it. */
interface Attached {
  readonly session: SmtpSession;
  readonly deliveries: Deliveries;
  readonly unsubscribe: () => void;
}

export class Courier {
  private current: Attached;
  private successor: Successor | undefined;
  private readonly abort = new AbortController();
  private closed = false;
  /** what the relay's replies say about its distance: kept across sessions, the relay does not move */
  private readonly pace = new Pace();
  /** deliveries without an outcome */
  private inFlight = 0;
  /** outcomes held for a turn behind the last one, in order */
  private late: CourierReport[] | undefined;

  constructor(
    session: SmtpSession,
    /** how to dial the successor, and how long it may wait idle (the keepalive) before it is not trusted */
    private readonly options: CourierOptions,
    private readonly report: (event: CourierReport) => void,
  ) {
    this.current = this.attach(session);
  }

  private attach(session: SmtpSession): Attached {
    // Subscribed before the loss listener: on a loss the deliveries fail
    // what was under way first, so LOST always precedes their outcomes.
    const deliveries = new Deliveries(session, (ms, now) => this.pace.observe(ms, now));
    const unsubscribe = session.onLost((error) => this.report({ type: 'LOST', error }));
    return { session, deliveries, unsubscribe };
  }

  handle(request: CourierRequest): void {
    switch (request.type) {
      case 'deliver': {
        const { job } = request;
        this.inFlight++;
        this.current.deliveries.submit(job.message.envelope, job.message.raw).then(
          (reply) => this.outcome({ type: 'SENT', job, reply, depth: this.pace.depth(this.options.pipelineDepth, this.options.pipelineDepthMax) }),
          (err: unknown) => this.outcome({ type: 'SEND_FAILED', job, error: toMailroomError(err) }),
        );
        return;
      }
      case 'predial':
        this.predial();
        return;
      case 'handover':
        this.handOver();
        return;
    }
  }

  /**
   * An outcome, reported in order. The one that leaves nothing in flight
   * waits one turn of the event loop (and those behind it with it): relays
   * that close after each message (or after N) send the close right behind
   * the 250, and the connection must hear LOST before it offers room again,
   * or the next job would fail for nothing.
   */
  private outcome(report: CourierReport): void {
    this.inFlight--;
    if (this.late !== undefined) {
      this.late.push(report);
      return;
    }
    if (this.inFlight > 0) {
      this.report(report);
      return;
    }
    const late = [report];
    this.late = late;
    setImmediate(() => {
      this.late = undefined;
      if (!this.closed) for (const r of late) this.report(r);
    });
  }

  private predial(): void {
    if (this.successor !== undefined) return;
    const successor: Successor = {
      dialled: dial(this.options, this.abort.signal).then(
        (next) => {
          if (this.closed || this.successor !== successor) {
            next.destroy();
            return;
          }
          successor.session = next;
          successor.expiry = setTimeout(() => this.letGo(successor), this.options.keepaliveMs).unref();
        },
        (err: unknown) => {
          successor.error = toMailroomError(err); // the connection re-dials as before; that dial reports the fault
        },
      ),
      session: undefined,
      error: undefined,
      expiry: undefined,
    };
    this.successor = successor;
  }

  private letGo(successor: Successor): void {
    clearTimeout(successor.expiry);
    if (this.successor === successor) this.successor = undefined;
    if (successor.session !== undefined) void successor.session.quit();
    successor.session = undefined;
  }

  private handOver(): void {
    const successor = this.successor;
    if (successor === undefined) {
      this.report({ type: 'NO_SUCCESSOR' });
      return;
    }
    void successor.dialled.then(() => {
      const next = successor.session;
      if (this.closed) return;
      if (next === undefined || next.lost !== undefined) {
        this.letGo(successor);
        this.report({ type: 'NO_SUCCESSOR', error: next?.lost ?? successor.error });
        return;
      }
      clearTimeout(successor.expiry);
      this.successor = undefined;
      const old = this.current;
      old.unsubscribe();
      void old.session.quit();
      this.current = this.attach(next);
      this.report({ type: 'HANDED_OVER', session: next });
    });
  }

  close(): void {
    this.closed = true;
    this.current.unsubscribe();
    this.abort.abort();
    this.current.session.destroy();
    clearTimeout(this.successor?.expiry);
    this.successor?.session?.destroy();
  }
}
