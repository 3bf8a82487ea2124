// The DKIM key: read and checked at boot and on SIGHUP, apart from the
// signer so that a service without DKIM never loads mailauth (its modules
// hold some 25 MB of an idle process).
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MailroomError } from '../errors.js';

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
