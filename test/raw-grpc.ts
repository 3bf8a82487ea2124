// Raw HTTP/2 gRPC calls: what grpc-js's client would not let a test send
// (a body cut short, a length prefix that lies, bytes that do not decode).
import { connect as http2Connect, constants as h2 } from 'node:http2';
import { connect as tcpConnect } from 'node:net';

export interface RawAnswer {
  readonly status: number;
  readonly message: string;
  readonly ms: number;
}

/**
 * One call on its own connection; `end`: whether the request's stream is
 * closed after `frames`; `from`: the local address to call from (any of
 * 127.0.0.0/8 on loopback: another caller, as the server sees it).
 */
export function rawCall(address: string, path: string, frames: Buffer, end: boolean, headers: Record<string, string> = {}, from?: string): Promise<RawAnswer> {
  const started = Date.now();
  const [host = '', port = ''] = address.split(':');
  const session = http2Connect(`http://${address}`, from === undefined ? {} : { createConnection: () => tcpConnect({ host, port: Number(port), localAddress: from }) });
  session.on('error', () => undefined);
  const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  return new Promise((resolve, reject) => {
    let headers: Record<string, unknown> = {};
    const answer = (from: Record<string, unknown>): void => {
      session.close();
      resolve({ status: Number(from['grpc-status']), message: decodeURIComponent(String(from['grpc-message'] ?? '')), ms: Date.now() - started });
    };
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => answer(t));
    stream.on('end', () => {
      // a trailers-only answer comes as headers
      if (headers['grpc-status'] !== undefined) answer(headers);
    });
    stream.on('error', reject);
    stream.resume();
    stream.write(frames);
    if (end) stream.end();
  });
}

/** A gRPC length-prefixed message: no compression flag, a 4-byte length (`declaredLength`, which may lie), then `payload`. */
export function frame(payload: Buffer, declaredLength = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([head, payload]);
}
