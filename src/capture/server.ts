// The embedded capture relay: with no EMAIL_HOST configured, mailroom sends
// to this SMTP server on loopback, which writes each accepted message to
// MAIL_CAPTURE_DIR as an .eml file. It makes a fresh machine useful at once.
import { mkdirSync, createWriteStream, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import type { Logger } from 'winston';

export interface CaptureServer {
  readonly port: number;
  readonly dir: string;
  close(): Promise<void>;
}

export async function startCaptureServer(dir: string, maxBytes: number, log: Logger): Promise<CaptureServer> {
  const folder = resolve(dir);
  mkdirSync(folder, { recursive: true });
  let seq = 0;
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    size: maxBytes * 2,
    banner: 'mailroom capture',
    logger: false,
    onData(stream, session, callback) {
      const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}-${++seq}.eml`;
      const partial = join(folder, `.${name}.part`);
      const out = createWriteStream(partial);
      const fail = (err: Error): void => {
        rmSync(partial, { force: true });
        callback(err);
      };
      stream.on('error', fail);
      out.on('error', fail);
      out.on('finish', () => {
        if (stream.sizeExceeded) {
          fail(Object.assign(new Error('message too large'), { responseCode: 552 }));
          return;
        }
        // Renamed only when complete, so a reader never sees half a message.
        renameSync(partial, join(folder, name));
        log.info('captured', { file: name, from: session.envelope.mailFrom && session.envelope.mailFrom.address, rcpt: session.envelope.rcptTo.length });
        callback(null, `captured as ${name}`);
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
