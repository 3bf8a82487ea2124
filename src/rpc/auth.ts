// Who is calling. With AUTH_TOKENS_FILE a call carries `authorization:
// Bearer <token>`; with GRPC_TLS_CLIENT_CA_FILE the TLS layer already
// required a client certificate, whose subject names the caller. Health is
// open to everyone; reflection takes any valid token. The caller's name (never
// its token) travels on with the call as `mailroom-caller` metadata, set here
// and only here (one a client sent is dropped), for the handlers' logs,
// per-caller caps and idempotency keys.
import * as grpc from '@grpc/grpc-js';
import { MailroomError } from '../errors.js';
import { toServiceError } from './status.js';
import { ADMIN_SERVICE, type TokenTable } from './tokens.js';

/** What grpc-js knows of a call's transport (ServerInterceptingCall.getAuthContext). */
type AuthContext = ReturnType<grpc.ServerInterceptingCall['getAuthContext']>;

export const CALLER_KEY = 'mailroom-caller';
const HEALTH = '/grpc.health.v1.Health/';
const REFLECTION = '/grpc.reflection.';
const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** The caller a call was authenticated as ('' when callers are not authenticated). */
export function callerOf(metadata: grpc.Metadata): string {
  const value = metadata.get(CALLER_KEY)[0];
  return typeof value === 'string' ? value : '';
}

/** The caller's name from a client certificate: its subject's CN, else the whole subject. */
function subjectName(context: AuthContext): string | undefined {
  const subject = context.sslPeerCertificate?.subject;
  if (subject === undefined) return undefined;
  const cn = subject.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  const parts = Object.entries(subject).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`);
  return parts.length > 0 ? parts.join(',') : undefined;
}

/** What the authentication interceptor tells of each call, by the call's peer (the listener keeps its connections by it). */
export interface CallerVerdicts {
  /** a call was authenticated: its connection is welcome */
  authenticated(peer: string): void;
  /** a call failed authentication */
  refused(peer: string): void;
}

export class Authenticator {
  constructor(
    private tokens: TokenTable | undefined,
    /** clients present certificates (mTLS) */
    readonly mutual: boolean,
    /** callers are not authenticated and the port is on loopback: whoever reaches it may manage the suppression list */
    private readonly openAdmin = false,
  ) {}

  /** callers must present tokens or certificates */
  get required(): boolean {
    return this.tokens !== undefined || this.mutual;
  }

  /** A new token table (SIGHUP); the old one stays when reading the new one failed before this. */
  replaceTokens(tokens: TokenTable): void {
    this.tokens = tokens;
  }

  /** The caller's name, or why the call is refused. */
  decide(path: string, metadata: grpc.Metadata, context: AuthContext): string | MailroomError {
    if (path.startsWith(HEALTH)) return '';
    const fromCertificate = this.mutual ? subjectName(context) : undefined;
    if (this.mutual && fromCertificate === undefined) return new MailroomError('EUNAUTHENTICATED', 'a client certificate is required');
    if (this.tokens === undefined) {
      if (path.startsWith(`/${ADMIN_SERVICE}/`) && !(this.openAdmin && !this.mutual)) {
        return new MailroomError('EFORBIDDEN', `${ADMIN_SERVICE} takes a token marked admin in AUTH_TOKENS_FILE (or no authentication, on loopback)`);
      }
      return fromCertificate ?? '';
    }
    const header = metadata.get('authorization')[0];
    const match = typeof header === 'string' ? BEARER.exec(header) : null;
    if (match === null) return new MailroomError('EUNAUTHENTICATED', 'send the metadata "authorization: Bearer <token>"');
    const caller = this.tokens.lookup(match[1] as string);
    if (caller === undefined) return new MailroomError('EUNAUTHENTICATED', 'unknown token');
    if (path.startsWith(REFLECTION)) return caller.name;
    const service = path.split('/')[1] ?? '';
    if (!caller.services.has(service)) return new MailroomError('EFORBIDDEN', `${caller.name} may not call ${service}`);
    return caller.name;
  }
}

/**
 * The server interceptor: refuses what the authenticator refuses, before the
 * request is read; names the caller for the rest; and tells `verdicts` how
 * each call went, by its peer. A health check is open to all, so where
 * callers must authenticate it proves nothing about its connection.
 */
export function authInterceptor(auth: Authenticator, verdicts: CallerVerdicts): grpc.ServerInterceptor {
  return (method, call) => {
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const caller = auth.decide(method.path, metadata, call.getAuthContext());
            if (caller instanceof MailroomError) {
              verdicts.refused(call.getPeer());
              intercepting.sendStatus(toServiceError(caller) as grpc.StatusObject);
              return;
            }
            if (!auth.required || !method.path.startsWith(HEALTH)) verdicts.authenticated(call.getPeer());
            metadata.remove('authorization');
            metadata.remove(CALLER_KEY);
            if (caller !== '') metadata.set(CALLER_KEY, caller);
            nextMetadata(metadata);
          },
        }),
    });
    return intercepting;
  };
}
