// What `mailroom send` reads for a message's parts: files to attach
// (--attach FILE), inline parts (--inline CID=FILE), extra header fields
// (--header 'Name: value'). The service checks them; here only what the
// command line itself can get wrong is a usage error.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Attachment } from '../generated/mail/Attachment.js';
import type { Header } from '../generated/mail/Header.js';
import { UsageError } from './io.js';

function read(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${option}: cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Attachments by file, then inline parts; the type is left to the service (from the name). */
export function attachmentsFrom(attach: readonly string[], inline: readonly string[]): Attachment[] {
  const parts: Attachment[] = attach.map((file) => ({ filename: basename(file), content: read('--attach', file) }));
  for (const spec of inline) {
    const eq = spec.indexOf('=');
    if (eq <= 0 || eq === spec.length - 1) throw new UsageError(`--inline: expected CID=FILE, e.g. logo=./logo.png, got ${JSON.stringify(spec)}`);
    const file = spec.slice(eq + 1);
    parts.push({ filename: basename(file), content: read('--inline', file), content_id: spec.slice(0, eq) });
  }
  return parts;
}

export function headersFrom(specs: readonly string[]): Header[] {
  return specs.map((spec) => {
    const colon = spec.indexOf(':');
    if (colon <= 0) throw new UsageError(`--header: expected 'Name: value', got ${JSON.stringify(spec)}`);
    return { name: spec.slice(0, colon).trim(), value: spec.slice(colon + 1).trim() };
  });
}
