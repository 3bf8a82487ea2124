// The sockets under one connection to the relay (plain, then TLS over it),
// and the one thing everything else asks of them: are they still up. The
// first loss is the connection's cause; everything waiting on it hears of it
// at once, in the order it subscribed.
import type { Socket } from 'node:net';
import { MailroomError } from '../errors.js';

export type LossListener = (err: MailroomError) => void;

/** Losses where the relay simply went away (closed, reset, or we dropped it): no reply was garbled or late. */
const departures = new WeakSet<MailroomError>();

function departure(message: string, cause?: Error): MailroomError {
  const err = new MailroomError('ECONNECTION', message, cause === undefined ? {} : { cause });
  departures.add(err);
  return err;
}

/**
 * Whether a loss is the connection going away, rather than the relay
 * misbehaving (a reply out of bounds, a missed deadline). Only a departure
 * before the relay answered MAIL proves the relay saw none of a message.
 */
export function isDeparture(err: MailroomError): boolean {
  return departures.has(err);
}

export class Link {
  private cause: MailroomError | undefined;
  private readonly sockets: Socket[] = [];
  private readonly listeners: LossListener[] = [];

  /** Why the connection is gone; undefined while it is up. */
  get lost(): MailroomError | undefined {
    return this.cause;
  }

  watch(sock: Socket | null): void {
    if (sock === null) return;
    this.sockets.push(sock);
    // A socket's error is the connection's loss; whoever watches it more
    // closely (dial's connect) names it first. Without a listener a late
    // reset would be an uncaught exception and kill the process.
    sock.on('error', (err: Error) => this.fail(departure(`connection to the SMTP relay lost: ${err.message}`, err)));
    // Once the relay has ended its side no reply can come: the connection is
    // lost right there, and nothing waits for a reply that cannot arrive.
    const gone = (): void => this.fail(departure('the SMTP relay closed the connection'));
    sock.once('end', gone);
    sock.once('close', gone);
  }

  /** Calls `listener` once when the connection is lost (at once if it is); returns an unsubscribe function. */
  onLost(listener: LossListener): () => void {
    if (this.cause !== undefined) {
      listener(this.cause);
      return () => undefined;
    }
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Records the loss (the first one wins) and tells every listener. */
  fail(err: MailroomError): void {
    if (this.cause !== undefined) return;
    this.cause = err;
    for (const listener of this.listeners.splice(0)) listener(err);
  }

  /** Drops the connection; `err` says why (a timeout, a reply out of step), when there is a why. */
  destroy(err?: MailroomError): void {
    // Called again and again as a session winds down: an error (and its stack) only the first time.
    if (this.cause === undefined) this.fail(err ?? departure('connection closed'));
    for (const sock of this.sockets) sock.destroy();
  }
}
