// TLS towards the relay, shared by every dial of a pool: one secure context
// and the newest session ticket, so that re-dials resume instead of
// verifying the certificate chain again.
import { isIP } from 'node:net';
import { TLSSocket, createSecureContext, type ConnectionOptions } from 'node:tls';
import type { SessionOptions, SessionSettings, TlsSessionCache } from './options.js';

const MIN_TLS_VERSION = 'TLSv1.2';

/**
 * The options with one TLS context and one session cache for all their
 * dials. A pool re-dials all the time (recycling after N messages,
 * reconnects): building a context from `ca` for each dial parsed the whole CA
 * file every time, and a full handshake each time made the relay sign and
 * this side verify a certificate chain again.
 */
export function withTlsContext<T extends SessionSettings>(options: T): T {
  if (options.tls === 'none' || options.secureContext !== undefined) return options;
  try {
    const secureContext = createSecureContext({ ...(options.ca !== undefined ? { ca: options.ca } : {}), minVersion: MIN_TLS_VERSION });
    return { ...options, secureContext, tlsSessions: options.tlsSessions ?? { last: undefined } };
  } catch {
    // An unusable CA file: each dial fails on it and says why (ETLS), as before.
    return options;
  }
}

/**
 * Where the handshake starts: inside tls.connect (STARTTLS on a connected
 * socket), or at the TCP connect after tls.connect has returned (implicit TLS).
 */
export type HandshakeStart = 'in-connect' | 'at-tcp-connect';

/** A TLSSocket as Node has it; @types/node leaves out setSession. */
interface SessionSetter {
  setSession(session: Buffer): void;
}

// Node 20's tls.connect parses a `session` option twice, synchronously, on
// every re-dial (docs/decisions.md). Set on the socket before its handshake
// starts it is parsed once. TLSSocket has had setSession as long as tls.connect has
// used it, though it is undocumented: without it the option is used.
const SETS_SESSION_LATE = typeof (TLSSocket.prototype as Partial<SessionSetter>).setSession === 'function';

export function tlsOptionsFor(options: SessionOptions, handshake: HandshakeStart): ConnectionOptions {
  const last = options.tlsSessions?.last;
  return {
    host: options.host,
    // SNI takes host names only.
    ...(isIP(options.host) === 0 ? { servername: options.host } : {}),
    // A shared context already holds the CAs and the minimum version.
    ...(options.secureContext !== undefined ? { secureContext: options.secureContext } : options.ca !== undefined ? { ca: options.ca } : {}),
    rejectUnauthorized: true,
    minVersion: MIN_TLS_VERSION,
    // Resumption still verifies: the session carries the verified chain, and the host name is checked again.
    ...(last !== undefined && (handshake === 'in-connect' || !SETS_SESSION_LATE) ? { session: last } : {}),
  };
}

/**
 * For a socket from tls.connect whose handshake starts at the TCP connect:
 * resumes the newest session (see SETS_SESSION_LATE) and keeps the newest
 * one the relay sends on it for the next dial.
 */
export function resumeSession(sock: TLSSocket, sessions: TlsSessionCache | undefined): void {
  const last = sessions?.last;
  if (last !== undefined && SETS_SESSION_LATE) (sock as TLSSocket & SessionSetter).setSession(last);
  keepSessions(sock, sessions);
}

/** Keeps the newest session the relay sends on this socket for the next dial. */
export function keepSessions(sock: TLSSocket, sessions: TlsSessionCache | undefined): void {
  if (sessions === undefined) return;
  sock.on('session', (session: Buffer) => {
    sessions.last = session;
  });
}
