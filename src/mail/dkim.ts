// DKIM signatures (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519) on every
// outgoing message. Canonicalization, the choice of header lines and the
// signature's text are mailauth's; what is ours is the key: parsed once,
// not once a message (mailauth's sign() parses the PEM every time, which
// costs more than an RSA signature), and the signature itself made in
// libuv's thread pool, off the event loop. Loaded only when DKIM is set.
import { createHash, sign } from 'node:crypto';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { generateCanonicalizedHeader } from 'mailauth/lib/dkim/header/index.js';
import { formatSignatureHeaderLine, getSigningHeaderLines, parseHeaders } from 'mailauth/lib/tools.js';
import { MailroomError } from '../errors.js';
import type { DkimKey } from './dkim-key.js';

/** The fields signed when present: the message's identity, its addresses, its structure and its unsubscribe offer. */
export const SIGNED_FIELDS = ['From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'MIME-Version', 'Content-Type', 'Reply-To', 'List-Unsubscribe', 'List-Unsubscribe-Post'];

export class DkimSigner {
  constructor(private key: DkimKey) {}

  /** SIGHUP: the next messages are signed with this key. */
  rekey(key: DkimKey): void {
    this.key = key;
  }

  /** The message with its DKIM-Signature field in front. */
  async sign(raw: string, now: Date): Promise<string> {
    const { key } = this;
    const end = raw.indexOf('\r\n\r\n');
    if (end < 0) throw new MailroomError('EINTERNAL', 'a composed message without a header block');
    const body = dkimBody('relaxed/relaxed', 'sha256', false);
    body.update(Buffer.from(raw.slice(end + 4), 'utf8'));
    const headers = parseHeaders(Buffer.from(raw.slice(0, end + 2), 'utf8'));
    const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', getSigningHeaderLines(headers.parsed, SIGNED_FIELDS.join(':')), {
      signingDomain: key.domain,
      selector: key.selector,
      algorithm: key.algorithm,
      canonicalization: 'relaxed/relaxed',
      bodyHash: body.digest('base64'),
      signTime: now,
    });
    // RFC 8463: Ed25519 signs the SHA-256 of the canonical header; RSA signs the header with SHA-256.
    const rsa = key.algorithm === 'rsa-sha256';
    const data = rsa ? canonicalizedHeader : createHash('sha256').update(canonicalizedHeader).digest();
    const signature = await new Promise<Buffer>((resolve, reject) => sign(rsa ? 'sha256' : null, data, key.key, (err, sig) => (err ? reject(err) : resolve(sig))));
    return `${formatSignatureHeaderLine('DKIM', { ...dkimHeaderOpts, b: signature.toString('base64') }, true)}\r\n${raw}`;
  }
}
