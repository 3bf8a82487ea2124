// The bounce listener (BOUNCE_PORT): an SMTP server that takes delivery
// reports for BOUNCE_DOMAIN and nothing else. It never relays: a recipient
// outside the domain is refused (550) at RCPT. Its limits: a connection
// cap for the whole listener, a report rate per peer address (a peer past
// it is told 450 at MAIL and comes back later: a legitimate MTA retries),
// and a size: a report's fields come before the original it encloses, so
// what is past BOUNCE_MAX_BYTES is read and dropped, not kept.
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import type { Logger } from 'winston';
import { TokenBucket } from '../lib/token-bucket.js';
import type { BounceSettings } from './settings.js';
import type { BounceDesk } from './desk.js';

export interface BounceListener {
  readonly port: number;
  close(): Promise<void>;
}

/** peers whose rate is remembered at once; the oldest is forgotten past it */
const PEERS = 10_000;

type Listener = NonNullable<BounceSettings['listener']>;

export async function startBounceListener(domain: string, settings: Listener, desk: BounceDesk, log: Logger): Promise<BounceListener> {
  const buckets = new Map<string, TokenBucket>();
  const allowed = (peer: string): boolean => {
    let bucket = buckets.get(peer);
    if (bucket === undefined) {
      if (buckets.size >= PEERS) buckets.delete(buckets.keys().next().value as string);
      bucket = new TokenBucket(settings.perPeerPerSecond, 1000, Date.now());
      buckets.set(peer, bucket);
    }
    return bucket.take(Date.now()) === 0;
  };
  const suffix = `@${domain}`;
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    size: settings.maxBytes,
    maxClients: settings.maxConnections,
    banner: 'mailroom bounce listener',
    logger: false,
    onMailFrom(_address, session, callback) {
      if (allowed(session.remoteAddress)) return callback();
      callback(Object.assign(new Error('4.7.1 too many reports from this address; try again later'), { responseCode: 450 }));
    },
    onRcptTo(address, _session, callback) {
      if (address.address.toLowerCase().endsWith(suffix)) return callback();
      callback(Object.assign(new Error('5.1.1 this server takes delivery reports for its own domain only; it relays nothing'), { responseCode: 550 }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      let kept = 0;
      stream.on('data', (chunk: Buffer) => {
        if (kept >= settings.maxBytes) return;
        const part = chunk.subarray(0, settings.maxBytes - kept);
        chunks.push(part);
        kept += part.length;
      });
      stream.on('error', (err) => callback(err));
      stream.on('end', () => {
        const recipients = session.envelope.rcptTo.map((r) => r.address);
        desk.receive(recipients, Buffer.concat(chunks)).then(
          // A report that changes nothing is still taken: the sender learns nothing from the answer, and does not retry.
          () => callback(null, 'report taken'),
          () => callback(Object.assign(new Error('4.3.0 the report could not be stored now; try again later'), { responseCode: 451 })),
        );
      });
    },
  });
  server.on('error', (err) => log.warn('bounce listener error', { reason: err.message }));
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(settings.port, settings.host, () => res());
  });
  const port = (server.server.address() as AddressInfo).port;
  return { port, close: () => new Promise<void>((res) => server.close(() => res())) };
}
