// What goes on the wire for a message: its envelope as one pipelined group,
// and its content, dot-stuffed; or, with CHUNKING, the whole message as one
// group whose content is counted, not stuffed.

/** The first write of a pipelined message: its envelope and DATA (RFC 2920). */
export function envelopeGroup(from: string, to: readonly string[]): string {
  let group = `MAIL FROM:<${from}>\r\n`;
  for (const rcpt of to) group += `RCPT TO:<${rcpt}>\r\n`;
  return `${group}DATA\r\n`;
}

/**
 * RFC 5321 4.5.2: a line that begins with "." gets one more. The final CRLF
 * is left to the caller, which adds it before the dot. A search for CRLF
 * and a dot, not a regular expression: a message of attachments is a
 * megabyte of base64 in which no line begins with one.
 */
export function dotStuff(raw: string): string {
  const body = raw.endsWith('\r\n') ? raw.slice(0, -2) : raw;
  let at = body.indexOf('\r\n.');
  if (at < 0 && body[0] !== '.') return body;
  let out = body[0] === '.' ? '.' : '';
  let from = 0;
  for (; at >= 0; at = body.indexOf('\r\n.', from)) {
    out += `${body.slice(from, at + 2)}.`;
    from = at + 2;
  }
  return out + body.slice(from);
}

/** The message content and the final dot that ends it, as the session writes them (two pieces: the content is not copied). */
export function content(raw: string): [string, string] {
  return [dotStuff(raw), '\r\n.\r\n'];
}

/**
 * RFC 3030 with RFC 2920: a whole single-recipient message as one write:
 * its envelope and BDAT <octets> LAST with the content as it is (no dot
 * stuffing, no end marker: the size says where it ends).
 */
export function wholeMessage(from: string, to: string, raw: string): string[] {
  const end = raw.endsWith('\r\n') ? [] : ['\r\n'];
  const octets = Buffer.byteLength(raw, 'utf8') + 2 * end.length;
  return [`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nBDAT ${octets} LAST\r\n`, raw, ...end];
}
