// A lean gRPC client for load: node's own HTTP/2, one session, requests
// encoded once up front. grpc-js's client costs about as much CPU a call as
// mailroom's QUEUED path does, and on a machine of two cores a load
// generator that heavy measures itself; this one costs a fraction of it, so
// what the outbox bench measures is the service. It speaks only unary calls
// and checks only grpc-status.
import * as http2 from 'node:http2';
import type { MethodDefinition, PackageDefinition } from '@grpc/proto-loader';

export interface H2Unary {
  /** one call with the encoded request; rejects with the grpc-status and message when it is not OK */
  call(frame: Buffer, deadlineMs: number): Promise<void>;
  close(): void;
}

/** The request as it goes on the wire: the 5-byte gRPC prefix and the message. */
export function encodeRequest(definition: PackageDefinition, service: string, method: string, request: object): Buffer {
  const m = definition[service]?.[method as never] as MethodDefinition<object, object> | undefined;
  if (m === undefined) throw new Error(`no method ${service}/${method}`);
  const body = m.requestSerialize(request);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

export async function connectH2(target: string, path: string): Promise<H2Unary> {
  const session = http2.connect(`http://${target}`);
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  session.on('error', () => undefined);
  const status = (headers: http2.IncomingHttpHeaders): Error | undefined => {
    const code = headers['grpc-status'];
    if (code === undefined) return undefined;
    return code === '0' ? undefined : new Error(`grpc-status ${String(code)}: ${decodeURIComponent(String(headers['grpc-message'] ?? ''))}`);
  };
  return {
    call(frame, deadlineMs) {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${Math.max(1, Math.round(deadlineMs))}m`,
        });
        let settled = false;
        const settle = (err: Error | undefined): void => {
          if (settled) return;
          settled = true;
          if (err === undefined) resolve();
          else reject(err);
        };
        // A trailers-only answer (an error) carries grpc-status in its headers.
        stream.on('response', (headers) => {
          const err = status(headers);
          if (err !== undefined) settle(err);
        });
        stream.on('trailers', (trailers) => settle(status(trailers) ?? undefined));
        stream.on('data', () => undefined);
        stream.on('close', () => settle(settled ? undefined : new Error(`stream closed (rst ${stream.rstCode})`)));
        stream.on('error', (err) => settle(err));
        stream.end(frame);
      });
    },
    close() {
      session.close();
    },
  };
}
