// WatchMessages cursors as callers see them: opaque, and each caller's own.
// A store position (SQLite's event number, a Redis stream id) would tell a
// caller how much mail the service carries for everyone, and one caller's
// cursor could be tried by another. Sealed with AES-256-GCM under the
// store's own key, the caller's identity bound in as associated data, a
// cursor says nothing, and one that was not minted for this caller by this
// store does not open: INVALID_ARGUMENT, never "from the start".
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

const IV = 12;
const TAG = 16;

export class CursorSeal {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('a cursor key is 32 bytes');
  }

  /** The same position gives the same cursor (its IV is a MAC of caller and position: a watcher that resumes sees the cursors it saw). */
  seal(caller: string, position: string): string {
    const iv = createHmac('sha256', this.key).update(caller).update('\0').update(position).digest().subarray(0, IV);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(caller, 'utf8'));
    const body = Buffer.concat([cipher.update(position, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
  }

  /** The position a cursor of `caller` stands for; undefined for anything else. */
  open(caller: string, cursor: string): string | undefined {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) return undefined;
    const raw = Buffer.from(cursor, 'base64url');
    if (raw.length <= IV + TAG) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV));
      decipher.setAAD(Buffer.from(caller, 'utf8'));
      decipher.setAuthTag(raw.subarray(raw.length - TAG));
      return Buffer.concat([decipher.update(raw.subarray(IV, raw.length - TAG)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
