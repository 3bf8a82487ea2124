// Codes and their keyed hashes. A code is uniform random digits from
// crypto.randomInt (rejection sampling, so no modulo bias). Only
// HMAC-SHA-256(secret, address key, code) is ever stored; binding the address
// means a stored hash says nothing about any other address's code.
import { createHmac, createSecretKey, randomBytes, randomInt, timingSafeEqual, type KeyObject } from 'node:crypto';

export const HASH_BYTES = 32;

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

  hash(addressKey: string, code: string): Buffer {
    // The NUL separates address from code: no address contains one.
    return createHmac('sha256', this.key).update(addressKey).update('\0').update(code).digest();
  }
}

/** Constant-time equality of two hashes of HASH_BYTES. */
export function sameHash(a: Buffer, b: Buffer): boolean {
  return timingSafeEqual(a, b);
}
