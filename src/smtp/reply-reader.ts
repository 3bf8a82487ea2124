// Reads SMTP replies off a socket's data: one callback per complete reply
// (a multi-line reply is one), its lines in the order they came. Every reply
// of a session goes through here, the greeting included.
//
// A relay is not trusted to be sane. A line over MAX_LINE bytes, a reply of
// more than MAX_LINES lines, or more than MAX_PENDING bytes waiting without a
// complete reply ends the session with ECONNECTION saying which. Reading is
// linear in the bytes received: a chunk is scanned once, and what waits for
// its line end is at most MAX_LINE bytes, prepended to the next chunk. No
// input makes push() throw.
import { MailroomError } from '../errors.js';

/** RFC 5321 4.5.3.1.5 gives 512 octets for a reply line; relays' banners and EHLO lines run longer in practice. */
export const MAX_LINE = 2048;
/** EHLO replies are the longest legitimate ones, a few dozen lines. */
export const MAX_LINES = 128;
export const MAX_PENDING = 64 * 1024;

const REPLY_LINE = /^\d{3}(?:[ -]|$)/;

export class ReplyReader {
  /** the start of a line whose end has not come yet (at most MAX_LINE bytes) */
  private partial = '';
  /** the lines so far of the reply being read */
  private lines: string[] = [];
  /** bytes of those lines */
  private pending = 0;
  private failed = false;

  constructor(
    private readonly onReply: (lines: string[]) => void,
    private readonly onError: (err: MailroomError) => void,
  ) {}

  /** Takes the next chunk of the socket's data (latin1: one character per byte). */
  push(chunk: string): void {
    if (this.failed) return;
    const text = this.partial === '' ? chunk : this.partial + chunk;
    this.partial = '';
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      if (end - start > MAX_LINE) return this.fail(`a reply line of more than ${MAX_LINE} bytes`);
      const line = text.slice(start, end);
      start = nl + 1;
      if (!REPLY_LINE.test(line)) return this.fail(`a malformed reply line ${JSON.stringify(line.slice(0, 80))}`);
      this.lines.push(line);
      this.pending += line.length;
      if (line.charCodeAt(3) === 45 /* '-' */) {
        if (this.lines.length >= MAX_LINES) return this.fail(`a reply of more than ${MAX_LINES} lines`);
        if (this.pending > MAX_PENDING) return this.fail(`more than ${MAX_PENDING} bytes without a complete reply`);
        continue;
      }
      const lines = this.lines;
      this.lines = [];
      this.pending = 0;
      this.onReply(lines);
      if (this.failed) return;
    }
    const rest = text.length - start;
    if (rest > MAX_LINE) return this.fail(`a reply line of more than ${MAX_LINE} bytes`);
    if (this.pending + rest > MAX_PENDING) return this.fail(`more than ${MAX_PENDING} bytes without a complete reply`);
    if (rest > 0) this.partial = start === 0 ? text : text.slice(start);
  }

  /** Reads nothing more (the session is gone, or the socket changes hands for STARTTLS). */
  stop(): void {
    this.failed = true;
    this.partial = '';
    this.lines = [];
  }

  private fail(why: string): void {
    this.stop();
    this.onError(new MailroomError('ECONNECTION', `the SMTP relay sent ${why}: connection dropped`));
  }
}
