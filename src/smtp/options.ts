// What one dial to the relay needs. Config builds these once at boot; the
// SMTP layer reads nothing else.
import type { SecureContext } from 'node:tls';

export type TlsMode = 'implicit' | 'starttls' | 'none';

/** Holds the newest TLS session (ticket) of one relay, shared by every dial of a pool. */
export interface TlsSessionCache {
  last: Buffer | undefined;
}

/** Everything about a session except where the relay is (capture mode learns its port at boot). */
export interface SessionSettings {
  readonly tls: TlsMode;
  readonly ca: string | undefined;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly heloName: string;
  readonly connectTimeoutMs: number;
  readonly greetingTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly dataTimeoutMs: number;
  /**
   * The TLS context every dial shares (see withTlsContext); without it each
   * dial builds its own from `ca`, parsing the CA file again.
   */
  readonly secureContext?: SecureContext;
  /**
   * The last TLS session the relay handed out, offered on the next dial
   * (see withTlsContext): a resumed handshake skips the certificate chain
   * on both sides, and the pool re-dials every max-messages-per-connection.
   */
  readonly tlsSessions?: TlsSessionCache;
}

export interface SessionOptions extends SessionSettings {
  readonly host: string;
  readonly port: number;
}
