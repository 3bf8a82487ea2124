// RFC 2920 PIPELINING for the per-message path: MAIL, every RCPT and DATA go
// out in one write, the payload and its final dot in a second, so a message
// costs two round trips and two writes (two TLS records) instead of
// 3 + recipients of each.
//
// TRAP: emailjs cannot read pipelined replies. Its SMTPResponseMonitor emits
// one reply per socket 'data' event (a second reply in the same chunk waits
// for the next chunk), and each emitted reply goes to every pending
// once('response') listener at the same time. So for a pipelined exchange the
// session stops emailjs's monitor, reads with a ReplyReader, and gives emailjs
// a fresh monitor afterwards (NOOP, RSET and QUIT still go through emailjs).
import type { Socket } from 'node:net';

/** Raw reply text, one reply per entry, lines joined with "\n" as emailjs hands them over. */
export type ReplyCallback = (err: Error | null, replies: string[]) => void;

const REPLY_LINE = /^\d{3}(?:[ -]|$)/;

export class ReplyReader {
  private buffer = '';
  private current = '';
  private readonly replies: string[] = [];
  /** what callers wait for, in the order their commands went out */
  private readonly waiting: { n: number; callback: ReplyCallback }[] = [];
  private error: Error | undefined;
  private readonly onData = (chunk: Buffer | string): void => this.read(chunk);

  constructor(private readonly sock: Socket) {
    sock.on('data', this.onData);
  }

  /**
   * Calls back once the next `n` complete replies are in (or on a malformed
   * one). Several expectations may wait at once (a message's final dot and
   * the next message's envelope): each gets its replies in turn.
   */
  expect(n: number, callback: ReplyCallback): void {
    this.waiting.push({ n, callback });
    this.flush();
  }

  /** Fails everything still waiting (the session is gone). */
  abort(err: Error): void {
    if (this.error === undefined) this.error = err;
    this.flush();
  }

  /** Stops reading; the socket's data goes to whoever listens next. */
  release(): void {
    this.sock.off('data', this.onData);
    this.waiting.length = 0;
  }

  private read(chunk: Buffer | string): void {
    if (this.error !== undefined) return;
    this.buffer += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let start = 0;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n', start)) {
      const line = this.buffer.charCodeAt(nl - 1) === 13 ? this.buffer.slice(start, nl - 1) : this.buffer.slice(start, nl);
      start = nl + 1;
      if (!REPLY_LINE.test(line)) {
        this.buffer = '';
        this.fail(new Error(`malformed reply line ${JSON.stringify(line.slice(0, 80))}`));
        return;
      }
      this.current += `${line}\n`;
      if (line.charCodeAt(3) !== 45 /* '-' */) {
        this.replies.push(this.current);
        this.current = '';
      }
    }
    this.buffer = start === 0 ? this.buffer : this.buffer.slice(start);
    this.flush();
  }

  private flush(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting[0] as { n: number; callback: ReplyCallback };
      if (this.error === undefined && this.replies.length < head.n) return;
      this.waiting.shift();
      if (this.error !== undefined) head.callback(this.error, []);
      else head.callback(null, this.replies.splice(0, head.n));
    }
  }

  private fail(err: Error): void {
    this.error = err;
    this.flush();
  }
}

/** The first write of a pipelined message: its envelope and DATA. */
export function envelopeGroup(from: string, to: readonly string[]): string {
  let group = `MAIL FROM:<${from}>\r\n`;
  for (const rcpt of to) group += `RCPT TO:<${rcpt}>\r\n`;
  return `${group}DATA\r\n`;
}
