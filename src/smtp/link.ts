// The sockets under one connection to the relay (plain, then TLS over it),
// and the one thing everything else asks of them: are they still up. The
// first loss is the connection's cause; everything waiting on it hears of it
// at once, in the order it subscribed.
import type { Socket } from 'node:net';
import { MailroomError } from '../errors.js';

export type LossListener = (err: MailroomError) => void;

export class Link {
  private cause: MailroomError | undefined;
  private readonly sockets: Socket[] = [];
  private readonly listeners: LossListener[] = [];

  /** `onDestroy` closes whatever else holds the sockets (emailjs's connection). */
  constructor(private readonly onDestroy: () => void) {}

  /** Why the connection is gone; undefined while it is up. */
  get lost(): MailroomError | undefined {
    return this.cause;
  }

  watch(sock: Socket | null): void {
    if (sock === null) return;
    this.sockets.push(sock);
    // TRAP: emailjs's close() removes its own 'error' listener; a late reset
    // on that socket would then be an uncaught exception and kill the process.
    sock.on('error', () => undefined);
    // Once the relay has ended its side no reply can come: the connection is
    // lost right there, and nothing waits for a reply that cannot arrive.
    const gone = (): void => this.fail(new MailroomError('ECONNECTION', 'the SMTP relay closed the connection'));
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
    if (this.cause === undefined) this.fail(err ?? new MailroomError('ECONNECTION', 'connection closed'));
    this.onDestroy();
    // emailjs forgets its socket on a graceful close (after a failed AUTH, say)
    // without waiting for it to go: make sure none outlives the connection.
    for (const sock of this.sockets) sock.destroy();
  }
}
