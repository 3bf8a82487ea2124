// What the client reads and prints: its TLS files, replies in proto JSON
// names, and failures with mailroom's metadata.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** A mistake in how the client was called: exit 2 with the usage. */
export class UsageError extends Error {}

/** The metadata a failure carries that a person needs (README, Errors). */
const ERROR_METADATA = ['mailroom-error', 'retry-after', 'smtp-code', 'smtp-enhanced-code'] as const;

function readOption(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`--${name} ${path}: ${(err as Error).message}`);
  }
}

/** Plain text unless a CA or a client certificate is given; a certificate needs its key. */
export function channelCredentials(tls: { ca?: string; cert?: string; key?: string }): grpc.ChannelCredentials {
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new UsageError('--tls-cert and --tls-key: give both, or neither');
  if (tls.ca === undefined && tls.cert === undefined) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    tls.ca === undefined ? null : readOption('tls-ca', tls.ca),
    tls.key === undefined ? null : readOption('tls-key', tls.key),
    tls.cert === undefined ? null : readOption('tls-cert', tls.cert),
  );
}

const camel = (name: string): string => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** A reply with proto JSON names (message_id → messageId) and timestamps as RFC 3339 text, as other gRPC tools print it. */
export function toProtoJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toProtoJson);
  if (typeof value !== 'object' || value === null) return value;
  if (Object.keys(value).length === 2 && 'seconds' in value && 'nanos' in value) {
    return new Date(Number(value.seconds) * 1000 + Math.floor(Number(value.nanos) / 1e6)).toISOString();
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [camel(k), toProtoJson(v)]));
}

/** `STATUS: details` and the metadata mailroom sends with a failure, on stderr. */
export function printFailure(err: unknown): void {
  const e = err as Partial<grpc.ServiceError>;
  const status = typeof e.code === 'number' ? (grpc.status[e.code] ?? String(e.code)) : 'ERROR';
  const lines = [`${status}: ${e.details ?? (err as Error).message ?? String(err)}`];
  for (const key of ERROR_METADATA) {
    const value = e.metadata?.get(key)[0];
    if (value !== undefined) lines.push(`  ${key}: ${String(value)}`);
  }
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** A unary method of a generated client, as the CLI calls it. */
export type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** Calls a unary method with the CLI's metadata and deadline. */
export type CallUnary = <Req, Res>(fn: Unary<Req, Res>, req: Req) => Promise<Res>;
