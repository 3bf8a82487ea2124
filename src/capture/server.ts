// The embedded capture relay: with no EMAIL_HOST configured, mailroom sends
// to this SMTP server on loopback, which writes each accepted message to
// MAIL_CAPTURE_DIR as an .eml file, its envelope (Return-Path, Delivered-To)
// first. It makes a fresh machine useful at once.
import { mkdirSync, createWriteStream, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';

export interface CaptureServer {
  readonly port: number;
  readonly dir: string;
  close(): Promise<void>;
}

export async function startCaptureServer(dir: string, maxBytes: number, log: Logger): Promise<CaptureServer> {
  const folder = resolve(dir);
  try {
    mkdirSync(folder, { recursive: true });
  } catch (err) {
    // Exit 2 with the variable's name (main), not a stack trace.
    throw new MailroomError('ECONFIG', `invalid configuration:\n  MAIL_CAPTURE_DIR=${JSON.stringify(dir)}: cannot be made (${(err as Error).message})`, { cause: err });
  }
  let seq = 0;
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    // A reverse DNS lookup per connection only delays the greeting on loopback.
    disableReverseLookup: true,
    disabledCommands: ['STARTTLS'],
    size: maxBytes * 2,
    banner: 'mailroom capture',
    logger: false,
    onData(stream, session, callback) {
      const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}-${++seq}.eml`;
      const partial = join(folder, `.${name}.part`);
      let answered = false;
      const answer = (err: Error | null, text?: string): void => {
        if (answered) return;
        answered = true;
        callback(err, text);
      };
      const fail = (reason: Error): void => {
        discard(partial);
        // smtp-server replies only once the message is read to its end: an
        // unread stream would leave the client waiting for its data timeout.
        stream.unpipe();
        stream.resume();
        log.warn('capture failed', { reason: reason.message });
        answer(Object.assign(new Error(`capture failed: ${reason.message}`), { responseCode: 451 }));
      };
      try {
        // Made again for every message: a folder someone removed while the
        // service runs (cleaning up old captures) must not break sending.
        mkdirSync(folder, { recursive: true });
      } catch (err) {
        fail(err as Error);
        return;
      }
      const out = createWriteStream(partial);
      stream.on('error', fail);
      out.on('error', fail);
      // The envelope, as an MTA's local delivery records it: Bcc recipients are in it and nowhere else.
      out.write(envelopeLines(session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address, session.envelope.rcptTo.map((r) => r.address)));
      out.on('finish', () => {
        if (answered) return;
        if (stream.sizeExceeded) {
          discard(partial);
          answer(Object.assign(new Error('message too large'), { responseCode: 552 }));
          return;
        }
        try {
          // Renamed only when complete, so a reader never sees half a message.
          renameSync(partial, join(folder, name));
        } catch (err) {
          fail(err as Error);
          return;
        }
        log.info('captured', { file: name, from: session.envelope.mailFrom && session.envelope.mailFrom.address, rcpt: session.envelope.rcptTo.length });
        answer(null, `captured as ${name}`);
      });
      stream.pipe(out);
    },
  });
  server.on('error', (err) => log.warn('capture server error', { reason: err.message }));
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    dir: folder,
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
}

/** Return-Path and one Delivered-To per envelope recipient, prepended to the captured message. */
export function envelopeLines(from: string, to: readonly string[]): string {
  return `Return-Path: <${from}>\r\n${to.map((address) => `Delivered-To: ${address}\r\n`).join('')}`;
}

/** Removes a partial file if there is one; a folder that is gone or not a folder is no error here. */
function discard(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // nothing was written there to clean up
  }
}
