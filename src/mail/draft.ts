// What a sender asks to send, validated: addresses, text, parts and extra
// fields, before it is composed into a message (compose.ts).
import { createHash } from 'node:crypto';
import type { Address } from './address.js';

export interface Attachment {
  /** '' for none; never a path (see rpc/attachments.ts) */
  readonly filename: string;
  readonly contentType: string;
  readonly content: Buffer;
  /** '' for an attachment; else an inline part the html names as cid:<contentId> */
  readonly contentId: string;
}

export interface HeaderField {
  readonly name: string;
  readonly value: string;
}

export interface Draft {
  readonly to: readonly Address[];
  readonly cc: readonly Address[];
  /** envelope only: never written into a header */
  readonly bcc: readonly Address[];
  readonly replyTo: readonly Address[];
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly attachments: readonly Attachment[];
  readonly headers: readonly HeaderField[];
  /** List-Unsubscribe's URIs, https first */
  readonly listUnsubscribe: readonly string[];
}

/** A draft with nothing but text: what code mail and most callers send. */
export const PLAIN = { cc: [], bcc: [], replyTo: [], html: '', attachments: [], headers: [], listUnsubscribe: [] } as const;

/** Bytes a draft's content takes before encoding: text, html and attachments. */
export function contentBytes(draft: Draft): number {
  let n = Buffer.byteLength(draft.text, 'utf8') + Buffer.byteLength(draft.html, 'utf8');
  for (const a of draft.attachments) n += a.content.length;
  return n;
}

/**
 * What tells two requests apart for an idempotency key: every field, and
 * each attachment's bytes hashed where they lie (JSON of a Buffer would be
 * an array of numbers several times its size).
 */
export function fingerprint(draft: Draft, ...more: readonly unknown[]): string {
  const hash = createHash('sha256');
  const { attachments, ...rest } = draft;
  hash.update(JSON.stringify([rest, more]));
  for (const a of attachments) {
    hash.update(JSON.stringify([a.filename, a.contentType, a.contentId, a.content.length]));
    hash.update(a.content);
  }
  return hash.digest('base64url');
}
