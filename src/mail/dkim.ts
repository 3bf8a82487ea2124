// DKIM signatures (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519) on every
// outgoing message. Canonicalization, the choice of header lines and the
// signature's text are mailauth's; what is ours is the key: parsed once,
// not once a message (mailauth's sign() parses the PEM every time, which
// costs more than an RSA signature), and the signature itself made in
// libuv's thread pool, off the event loop.
import { createHash, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { generateCanonicalizedHeader } from 'mailauth/lib/dkim/header/index.js';
import { formatSignatureHeaderLine, getSigningHeaderLines, parseHeaders } from 'mailauth/lib/tools.js';
import { MailroomError } from '../errors.js';

/** The fields signed when present: the message's identity, its addresses, its structure and its unsubscribe offer. */
export const SIGNED_FIELDS = ['From', 'To', 'Cc', 'Subject', 'Date', 'Message-ID', 'MIME-Version', 'Content-Type', 'Reply-To', 'List-Unsubscribe', 'List-Unsubscribe-Post'];

export interface DkimSettings {
  readonly domain: string;
  readonly selector: string;
  readonly keyFile: string;
}

export interface DkimKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: 'rsa-sha256' | 'ed25519-sha256';
  readonly key: KeyObject;
}

const MIN_RSA_BITS = 2048;

/** Reads and checks the key; throws ECONFIG naming the setting (never the key's text). */
export function loadDkimKey(settings: DkimSettings, fromAddress: string): DkimKey {
  const problem = (why: string): MailroomError => new MailroomError('ECONFIG', `invalid configuration:\n  ${why}`);
  const fromDomain = fromAddress.slice(fromAddress.lastIndexOf('@') + 1).toLowerCase();
  const domain = settings.domain.toLowerCase();
  if (fromDomain !== domain && !fromDomain.endsWith(`.${domain}`)) {
    throw problem(`DKIM_DOMAIN=${JSON.stringify(settings.domain)}: EMAIL_FROM's domain (${fromDomain}) is not it or under it, so receivers would not count the signature for the From domain (DMARC alignment)`);
  }
  let pem: Buffer;
  try {
    pem = readFileSync(settings.keyFile);
  } catch (err) {
    throw problem(`DKIM_PRIVATE_KEY_FILE=${JSON.stringify(settings.keyFile)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw problem(`DKIM_PRIVATE_KEY_FILE=${JSON.stringify(settings.keyFile)}: not a PEM private key`);
  } finally {
    pem.fill(0);
  }
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return { domain: settings.domain, selector: settings.selector, algorithm: 'ed25519-sha256', key };
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw problem(`DKIM_PRIVATE_KEY_FILE=${JSON.stringify(settings.keyFile)}: an RSA key of ${bits} bits; at least ${MIN_RSA_BITS} (RFC 8301)`);
    return { domain: settings.domain, selector: settings.selector, algorithm: 'rsa-sha256', key };
  }
  throw problem(`DKIM_PRIVATE_KEY_FILE=${JSON.stringify(settings.keyFile)}: a ${type ?? 'unknown'} key; RSA (2048 bits or more) or Ed25519`);
}

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
