// Attachments and inline parts as a request gives them, checked: a name that
// is a name (no path, no line breaks, no NUL), a content type that is one
// type and can carry base64, an inline part the html really names, and a
// count and size the limits allow. What passes becomes the draft's parts.
import { contentTypeOf } from '../mail/content-types.js';
import type { Attachment } from '../mail/draft.js';
import type { Attachment__Output } from '../generated/mail/Attachment.js';
import type { Problems } from './problems.js';

export interface AttachmentLimits {
  readonly maxAttachments: number;
  readonly maxMessageBytes: number;
}

export const MAX_FILENAME_CHARS = 255;
const MAX_CONTENT_TYPE_CHARS = 200;
const MAX_CONTENT_ID_CHARS = 200;
const TOKEN = "[A-Za-z0-9!#$&^_.+'`|~-]+";
/** type/subtype and parameters (RFC 2045 5.1), nothing that could end the header field */
const CONTENT_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(\\s*;\\s*${TOKEN}=(${TOKEN}|"[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]*"))*$`);
/** a Content-ID's inside: printable ASCII without the brackets, quotes, backslash or space that would end it */
const CONTENT_ID = /^[\x21\x23-\x3b\x3d\x3f-\x5b\x5d-\x7e]+$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

/** What `bytes` of content take in base64 lines of 76 with their CRLFs. */
export function base64Bytes(bytes: number): number {
  const chars = Math.ceil(bytes / 3) * 4;
  return chars + 2 * Math.ceil(chars / 76);
}

export function checkAttachments(list: readonly Attachment__Output[], html: string, limits: AttachmentLimits, problems: Problems): Attachment[] {
  if (list.length > limits.maxAttachments) {
    problems.add(`attachments: at most ${limits.maxAttachments} (MAX_ATTACHMENTS; got ${list.length})`);
    return [];
  }
  const out: Attachment[] = [];
  const ids = new Set<string>();
  let encoded = 0;
  list.forEach((a, i) => {
    const at = `attachments[${i}]`;
    const filename = checkFilename(a.filename, a.content_id !== '', `${at}.filename`, problems);
    const contentType = a.content_type === '' ? contentTypeOf(a.filename) : a.content_type;
    if (a.content_type.length > MAX_CONTENT_TYPE_CHARS || !CONTENT_TYPE.test(a.content_type === '' ? contentType : a.content_type)) {
      problems.add(`${at}.content_type: a MIME type such as application/pdf (at most ${MAX_CONTENT_TYPE_CHARS} characters)`);
    } else if (/^(multipart|message)\//i.test(contentType)) {
      problems.add(`${at}.content_type: ${contentType.split(';')[0]} cannot be attached in base64; send it as application/octet-stream`);
    }
    if (a.content_id !== '') {
      if (a.content_id.length > MAX_CONTENT_ID_CHARS || !CONTENT_ID.test(a.content_id)) {
        problems.add(`${at}.content_id: 1 to ${MAX_CONTENT_ID_CHARS} printable ASCII characters without spaces, quotes, backslashes or angle brackets`);
      } else if (ids.has(a.content_id)) {
        problems.add(`${at}.content_id: ${a.content_id} names two parts`);
      } else if (html === '') {
        problems.add(`${at}.content_id: an inline part needs html that shows it (cid:${a.content_id})`);
      } else if (!html.includes(`cid:${a.content_id}`)) {
        problems.add(`${at}.content_id: the html never refers to cid:${a.content_id}; send it without content_id to attach it`);
      }
      ids.add(a.content_id);
    }
    encoded += base64Bytes(a.content.length);
    if (filename !== undefined) out.push({ filename, contentType, content: a.content, contentId: a.content_id });
  });
  if (encoded > limits.maxMessageBytes) {
    problems.add(`attachments: ${encoded} bytes once base64-encoded, more than MAX_MESSAGE_BYTES (${limits.maxMessageBytes})`);
  }
  return out;
}

function checkFilename(name: string, inline: boolean, at: string, problems: Problems): string | undefined {
  if (name === '') {
    if (inline) return name;
    problems.add(`${at}: required for an attachment (an inline part may go without)`);
    return undefined;
  }
  if ([...name].length > MAX_FILENAME_CHARS) problems.add(`${at}: at most ${MAX_FILENAME_CHARS} characters`);
  else if (CONTROL.test(name)) problems.add(`${at}: must not contain CR, LF, NUL or other control characters`);
  else if (/[/\\]/.test(name) || name === '.' || name === '..') problems.add(`${at}: a file name, not a path (no / or \\)`);
  else if (name.trim() === '') problems.add(`${at}: must not be blank`);
  else return name;
  return undefined;
}
