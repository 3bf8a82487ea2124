// What goes on the wire for a message: its envelope as one pipelined group,
// and its content, dot-stuffed; or, with CHUNKING, the whole message as one
// group whose content is counted, not stuffed.

/** The first write of a pipelined message: its envelope and DATA (RFC 2920). */
export function envelopeGroup(from: string, to: readonly string[]): string {
  let group = `MAIL FROM:<${from}>\r\n`;
  for (const rcpt of to) group += `RCPT TO:<${rcpt}>\r\n`;
  return `${group}DATA\r\n`;
}

const DOT_LINE = /(^|\r\n)\./g;

/** RFC 5321 4.5.2: a line that begins with "." gets one more. The final CRLF is left to the caller, which adds it before the dot. */
export function dotStuff(raw: string): string {
  const body = raw.endsWith('\r\n') ? raw.slice(0, -2) : raw;
  return body.includes('.') ? body.replace(DOT_LINE, '$1..') : body;
}

/** The message content and the final dot that ends it. */
export function content(raw: string): string {
  return `${dotStuff(raw)}\r\n.\r\n`;
}

/**
 * RFC 3030 with RFC 2920: a whole single-recipient message as one write:
 * its envelope and BDAT <octets> LAST with the content as it is (no dot
 * stuffing, no end marker: the size says where it ends).
 */
export function wholeMessage(from: string, to: string, raw: string): string {
  const body = raw.endsWith('\r\n') ? raw : `${raw}\r\n`;
  return `MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nBDAT ${Buffer.byteLength(body, 'utf8')} LAST\r\n${body}`;
}
