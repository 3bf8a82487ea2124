// Reads SMTP replies off a socket's data: one callback per complete reply
// (a multi-line reply is one), in the order they came.
//
// TRAP: emailjs cannot read pipelined replies. Its SMTPResponseMonitor emits
// one reply per socket 'data' event (a second reply in the same chunk waits
// for the next chunk), and each emitted reply goes to every pending
// once('response') listener at the same time. So after the handshake a
// session reads with this instead, for every command.
import { MailroomError, type SmtpReply } from '../errors.js';
import { parseSmtpReply } from './reply.js';

const REPLY_LINE = /^\d{3}(?:[ -]|$)/;

export class ReplyReader {
  /** the start of a line whose end has not come yet */
  private partial = '';
  /** the lines so far of a multi-line reply, joined with "\n" */
  private current = '';
  private failed = false;

  constructor(
    private readonly onReply: (reply: SmtpReply) => void,
    private readonly onError: (err: MailroomError) => void,
  ) {}

  /** Takes the next chunk of the socket's data (latin1: one character per byte). */
  push(chunk: string): void {
    if (this.failed) return;
    const text = this.partial === '' ? chunk : this.partial + chunk;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      const line = text.charCodeAt(nl - 1) === 13 ? text.slice(start, nl - 1) : text.slice(start, nl);
      start = nl + 1;
      if (!REPLY_LINE.test(line)) {
        this.failed = true;
        this.onError(new MailroomError('ECONNECTION', `malformed reply line from the SMTP relay: ${JSON.stringify(line.slice(0, 80))}`));
        return;
      }
      this.current += `${line}\n`;
      if (line.charCodeAt(3) !== 45 /* '-' */) {
        const reply = parseSmtpReply(this.current) as SmtpReply; // every line matched REPLY_LINE
        this.current = '';
        this.onReply(reply);
        if (this.failed) return;
      }
    }
    this.partial = start === 0 ? text : text.slice(start);
  }

  /** Reads nothing more (the session is gone). */
  stop(): void {
    this.failed = true;
  }
}
