// A validated draft becomes what a connection sends: envelope plus message text.
import { MailroomError } from '../errors.js';
import type { Address } from './address.js';
import type { DkimSigner } from './dkim.js';
import type { Draft } from './draft.js';
import { buildMime, newMessageId } from './mime.js';
import type { Envelope, ReturnPathMinter } from './envelope.js';

export interface OutgoingMessage {
  readonly messageId: string;
  readonly envelope: Envelope;
  /** RFC 5322 text with CRLF line ends, not yet dot-stuffed */
  readonly raw: string;
}

export function composeMessage(draft: Draft, from: Address, now: Date = new Date(), paths?: ReturnPathMinter): OutgoingMessage {
  const messageId = newMessageId(from.address.slice(from.address.lastIndexOf('@') + 1));
  // Named fields, not a spread of the draft: the spread took about 8 µs a
  // message here, more than building the message text.
  const { to, cc, replyTo, subject, text, html, attachments, headers, listUnsubscribe } = draft;
  const raw = buildMime({ from, to, cc, replyTo, subject, text, html, attachments, headers, listUnsubscribe, messageId, date: now });
  return { messageId, envelope: { from: paths === undefined ? from.address : paths.sender(messageId, from.address), to: envelopeRecipients(draft) }, raw };
}

/**
 * How every sender's drafts become messages: composed from the service's
 * From, held to MAX_MESSAGE_BYTES, and signed when DKIM is set up. Without
 * a signer the message is there at once, with no turn of the loop spent.
 */
export class Composer {
  constructor(
    private readonly from: Address,
    private readonly maxMessageBytes: number,
    private readonly signer: DkimSigner | undefined,
    /** BOUNCE_DOMAIN: each message's envelope sender is its own return path */
    private readonly paths?: ReturnPathMinter,
  ) {}

  /** Throws EINVALID when the encoded message is larger than MAX_MESSAGE_BYTES. */
  compose(draft: Draft): OutgoingMessage | Promise<OutgoingMessage> {
    const date = new Date();
    const message = composeMessage(draft, this.from, date, this.paths?.domain !== undefined ? this.paths : undefined);
    // Base64 and encoded words keep the text ASCII; only an address may hold UTF-8.
    const size = message.raw.length * 3 <= this.maxMessageBytes ? message.raw.length : Buffer.byteLength(message.raw, 'utf8');
    if (size > this.maxMessageBytes) {
      throw new MailroomError('EINVALID', `message: ${size} bytes encoded, more than MAX_MESSAGE_BYTES (${this.maxMessageBytes}); attachments grow by a third in base64`);
    }
    if (this.signer === undefined) return message;
    return this.signer.sign(message.raw, date).then((raw) => ({ ...message, raw }));
  }
}

/** Every recipient once (addresses compare case-insensitively), Bcc included. */
function envelopeRecipients(draft: Draft): string[] {
  const all = draft.cc.length === 0 && draft.bcc.length === 0 ? draft.to : [...draft.to, ...draft.cc, ...draft.bcc];
  if (all.length === 1) return [(all[0] as Address).address];
  const seen = new Set<string>();
  const out: string[] = [];
  for (const a of all) {
    const key = a.address.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(a.address);
  }
  return out;
}
