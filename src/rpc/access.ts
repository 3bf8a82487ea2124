// Who may call, as configured: the token table, the gRPC port's TLS
// certificates, and re-reading both on SIGHUP. Certificates that do not load
// stop boot (ECONFIG, exit 2); on reload a file that does not load keeps
// what was loaded before, and the log says why.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { isLoopback } from './peer.js';
import { Authenticator, authInterceptor, type CallerVerdicts } from './auth.js';
import { ServerCertificates } from './credentials.js';
import { TokenTable } from './tokens.js';

/** Who may call, as configured (config.auth). */
export interface AuthSettings {
  readonly tokensFile: string | undefined;
  /** the file's table as read at boot */
  readonly tokens: TokenTable | undefined;
  /** TLS on the gRPC port; with a client CA, clients must present certificates */
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string | undefined } | undefined;
  /** ALLOW_UNAUTHENTICATED: serve callers who are not authenticated on a non-loopback HOST */
  readonly allowUnauthenticated: boolean;
  /** tokens or client certificates are required */
  readonly required: boolean;
}

export class CallerAccess {
  private readonly certificates: ServerCertificates | undefined;
  private readonly authenticator: Authenticator;

  constructor(
    private readonly auth: AuthSettings,
    /** where the gRPC port listens (HOST, PORT), for the warning of an open one */
    listening: { readonly host: string; readonly port: number },
    private readonly log: Logger,
  ) {
    this.certificates = auth.tls === undefined ? undefined : new ServerCertificates(auth.tls);
    this.authenticator = new Authenticator(auth.tokens, this.certificates?.mutual ?? false, !auth.required && isLoopback(listening.host));
    if (!auth.required && auth.allowUnauthenticated && !isLoopback(listening.host)) {
      log.warn(`ALLOW_UNAUTHENTICATED=true: anyone who reaches ${listening.host}:${listening.port} can send mail through the relay account and check codes`);
    }
  }

  credentials(): grpc.ServerCredentials {
    return this.certificates?.credentials() ?? grpc.ServerCredentials.createInsecure();
  }

  /** `verdicts` hears of every call authenticated or refused. */
  interceptor(verdicts: CallerVerdicts): grpc.ServerInterceptor {
    return authInterceptor(this.authenticator, verdicts);
  }

  /** For the 'listening' line: how the port is secured and who is let in. */
  describe(): { grpcTls: string; callers: number | string } {
    const { certificates } = this;
    return {
      grpcTls: certificates === undefined ? 'off' : certificates.mutual ? 'mutual' : 'server',
      callers: this.auth.tokens?.names.length ?? (certificates?.mutual === true ? 'client certificates' : 'not authenticated'),
    };
  }

  /** SIGHUP: re-reads the tokens file and the certificates; says what was re-read and what was kept as it was (each failure logged). */
  reload(): { reread: string[]; kept: string[] } {
    const reread: string[] = [];
    const kept: string[] = [];
    const { tokensFile } = this.auth;
    if (tokensFile !== undefined) {
      try {
        const tokens = TokenTable.parse(readFileSync(tokensFile, 'utf8'), tokensFile);
        this.authenticator.replaceTokens(tokens);
        reread.push(`AUTH_TOKENS_FILE (${tokens.size} callers: ${tokens.names.join(', ')})`);
      } catch (err) {
        this.log.error('SIGHUP: AUTH_TOKENS_FILE not re-read; the tokens loaded before stay', { reason: (err as Error).message });
        kept.push('AUTH_TOKENS_FILE');
      }
    }
    if (this.certificates !== undefined) {
      try {
        this.certificates.reload();
        reread.push('the gRPC TLS certificates');
      } catch (err) {
        this.log.error('SIGHUP: the gRPC TLS certificates not re-read; those loaded before stay', { reason: (err as Error).message });
        kept.push('the gRPC TLS certificates');
      }
    }
    return { reread, kept };
  }
}
