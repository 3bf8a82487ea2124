// TLS towards the relay, shared by every dial of a pool: one secure context
// and the newest session ticket, so that re-dials resume instead of
// verifying the certificate chain again.
import { isIP } from 'node:net';
import { createSecureContext, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { SessionOptions } from './session.js';

/** Holds the newest TLS session (ticket) of one relay, shared by every dial of a pool. */
export class TlsSessionCache {
  last: Buffer | undefined;
}

const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * The options with one TLS context and one session cache for all their
 * dials. A pool re-dials all the time (recycling after N messages,
 * reconnects): building a context from `ca` for each dial parsed the whole CA
 * file every time, and a full handshake each time made the relay sign and
 * this side verify a certificate chain again.
 */
export function withTlsContext(options: SessionOptions): SessionOptions {
  if (options.tls === 'none' || options.secureContext !== undefined) return options;
  try {
    const secureContext = createSecureContext({ ...(options.ca !== undefined ? { ca: options.ca } : {}), minVersion: MIN_TLS_VERSION });
    return { ...options, secureContext, tlsSessions: options.tlsSessions ?? new TlsSessionCache() };
  } catch {
    // An unusable CA file: each dial fails on it and says why (ETLS), as before.
    return options;
  }
}

export function tlsOptionsFor(options: SessionOptions): ConnectionOptions {
  return {
    host: options.host,
    // SNI takes host names only.
    ...(isIP(options.host) === 0 ? { servername: options.host } : {}),
    // A shared context already holds the CAs and the minimum version.
    ...(options.secureContext !== undefined ? { secureContext: options.secureContext } : options.ca !== undefined ? { ca: options.ca } : {}),
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
    // Resumption still verifies: the session carries the verified chain, and the host name is checked again.
    ...(options.tlsSessions?.last !== undefined ? { session: options.tlsSessions.last } : {}),
  };
}

/** Keeps the newest session the relay sends on this socket for the next dial. */
export function keepSessions(sock: TLSSocket, sessions: TlsSessionCache | undefined): void {
  if (sessions === undefined) return;
  sock.on('session', (session: Buffer) => {
    sessions.last = session;
  });
}
