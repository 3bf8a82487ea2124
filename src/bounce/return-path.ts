// Per-message return paths (VERP) and address digests. With BOUNCE_DOMAIN
// set, a message's envelope sender is b+<token>@BOUNCE_DOMAIN: the token is
// a key that names the message (a hash of its Message-ID) and a MAC over it
// under a secret only mailroom holds, so a report can name a message only
// if it came back from a real one. Addresses are kept as digests (a keyed
// hash of the normalised address): the store matches a report's recipient
// and holds the suppression list without an address in clear.
//
// Both secrets derive from the outbox store's own key (cursorKey), so every
// replica on one Redis mints and reads the same tokens and digests.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { OutgoingMessage } from '../mail/compose.js';
import type { ReturnPath } from '../outbox/store.js';

/** the reserved domain of the mailbox simulator (simulator.ts): never real mail */
export const SIMULATOR_DOMAIN = 'simulator.mailroom.invalid';

const KEY_BYTES = 10;
const MAC_BYTES = 6;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
/** base32 characters of a token: key and MAC */
const TOKEN_CHARS = Math.ceil(((KEY_BYTES + MAC_BYTES) * 8) / 5);
const TOKEN_ADDRESS = new RegExp(`^b\\+([a-z2-7]{${TOKEN_CHARS}})@(.+)$`, 'i');

function base32(bytes: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(s: string): Buffer | undefined {
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of s.toLowerCase()) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) return undefined;
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return Buffer.from(bytes);
}

/** An address as the suppression list and reports compare it: trimmed, lower case. */
export function normalise(address: string): string {
  return address.trim().toLowerCase();
}

export function isSimulated(address: string): boolean {
  return normalise(address).endsWith(`@${SIMULATOR_DOMAIN}`);
}

export class BounceKeys {
  private readonly verp: Buffer;
  private readonly address: Buffer;

  constructor(storeKey: Buffer) {
    this.verp = createHmac('sha256', storeKey).update('mailroom return path').digest();
    this.address = createHmac('sha256', storeKey).update('mailroom address digest').digest();
  }

  /** The digest an address is stored and matched by. */
  digest(address: string): string {
    return createHmac('sha256', this.address).update(normalise(address)).digest('base64url').slice(0, 22);
  }

  /** The key a message's return path names (hex). */
  keyOf(messageId: string): string {
    return createHash('sha256').update(messageId).digest().subarray(0, KEY_BYTES).toString('hex');
  }

  token(key: string): string {
    const k = Buffer.from(key, 'hex');
    return base32(Buffer.concat([k, this.mac(k)]));
  }

  /** The key a token names, when its MAC verifies; else undefined. Only the one spelling mint() gives is taken (its last character's spare bits 0). */
  open(token: string): string | undefined {
    const raw = unbase32(token);
    if (raw?.length !== KEY_BYTES + MAC_BYTES || base32(raw) !== token.toLowerCase()) return undefined;
    const k = raw.subarray(0, KEY_BYTES);
    return timingSafeEqual(raw.subarray(KEY_BYTES), this.mac(k)) ? k.toString('hex') : undefined;
  }

  private mac(k: Buffer): Buffer {
    return createHmac('sha256', this.verp).update(k).digest().subarray(0, MAC_BYTES);
  }
}

/**
 * Return paths for BOUNCE_DOMAIN (undefined: envelope senders do not
 * change), and what the store keeps to match a report: simulated messages
 * get one always, so that the simulator works with nothing configured.
 */
export class ReturnPaths {
  private keys: BounceKeys | undefined;

  constructor(readonly domain: string | undefined) {}

  /** The store's key is known (it may be down at boot): from now on paths are minted. */
  use(keys: BounceKeys): void {
    this.keys = keys;
  }

  get ready(): BounceKeys | undefined {
    return this.keys;
  }

  /** The envelope sender for a message, or `from` when return paths are off. */
  sender(messageId: string, from: string): string {
    if (this.domain === undefined || this.keys === undefined) return from;
    return `b+${this.keys.token(this.keys.keyOf(messageId))}@${this.domain}`;
  }

  /** What the store keeps of a message to match its reports; undefined when nothing is (no BOUNCE_DOMAIN, not simulated). */
  pathOf(message: OutgoingMessage): ReturnPath | undefined {
    const keys = this.keys;
    if (keys === undefined) return undefined;
    if (this.domain === undefined && !message.envelope.to.every(isSimulated)) return undefined;
    // The key the envelope sender already names (compose minted it), read back rather than hashed again.
    const from = message.envelope.from;
    const minted = this.domain !== undefined && from.startsWith('b+') && from.endsWith(`@${this.domain}`) ? unbase32(from.slice(2, 2 + TOKEN_CHARS))?.subarray(0, KEY_BYTES).toString('hex') : undefined;
    return { key: minted ?? keys.keyOf(message.messageId), recipients: message.envelope.to.map((a) => keys.digest(a)) };
  }

  /** The key a listener recipient (b+<token>@domain) names, if its token verifies. */
  keyOfAddress(address: string): string | undefined {
    const keys = this.keys;
    if (keys === undefined) return undefined;
    const m = TOKEN_ADDRESS.exec(address.trim());
    if (m === null) return undefined;
    return keys.open(m[1] as string);
  }
}
