// Codes and their keyed hashes. A code is uniform random digits from
// crypto.randomInt (rejection sampling, so no modulo bias). Only
// HMAC-SHA-256(secret, address key, code) is ever stored; binding the address
// means a stored hash says nothing about any other address's code.
import { createHmac, createSecretKey, randomBytes, randomInt, timingSafeEqual, type KeyObject } from 'node:crypto';

export const HASH_BYTES = 32;

/**
 * An HMAC-SHA-256 as a 32-character latin1 string, one byte per character: a
 * million of them cost tens of MB as compact heap strings, where Buffers cost
 * hundreds (a heap object plus a separately allocated backing store each).
 */
export type CodeHash = string;

export function generateCode(length: number): string {
  let code = '';
  for (let i = 0; i < length; i++) code += String(randomInt(10));
  return code;
}

export class CodeHasher {
  private readonly key: KeyObject;

  /** secret undefined: a random key per process, so codes do not survive a restart */
  constructor(secret: string | undefined) {
    this.key = createSecretKey(secret === undefined ? randomBytes(32) : Buffer.from(secret, 'utf8'));
  }

  hash(addressKey: string, code: string): CodeHash {
    // The NUL separates address from code: no address contains one.
    return createHmac('sha256', this.key).update(addressKey).update('\0').update(code).digest('binary'); // 'binary' is latin1
  }

  /**
   * A name for the address that does not give it away (a shared store's
   * key names are seen by whoever lists them). Its input starts with a NUL,
   * which no address does, so it is never a code's hash.
   */
  nameOf(addressKey: string): string {
    return createHmac('sha256', this.key).update('\0address\0').update(addressKey).digest('base64url');
  }

  /** A random hash no code has: what a check compares with when there is no live code. */
  static dummy(): CodeHash {
    return randomBytes(HASH_BYTES).toString('latin1');
  }
}

/**
 * Constant-time equality of a CodeHash and 32 stored bytes at `at`, through
 * two scratch buffers owned by the caller: the stored bytes are copied by a
 * loop, not through a view (subarray makes an object), so a comparison
 * allocates nothing; one event loop, so no sharing.
 */
export function sameHashAt(candidate: CodeHash, bytes: Uint8Array, at: number, scratch: { a: Buffer; b: Buffer }): boolean {
  scratch.a.write(candidate, 'latin1');
  for (let i = 0; i < HASH_BYTES; i++) scratch.b[i] = bytes[at + i] as number;
  return candidate.length === HASH_BYTES && timingSafeEqual(scratch.a, scratch.b);
}
