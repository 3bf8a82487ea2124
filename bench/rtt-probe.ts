// The round trip a sender actually pays through the bench's delay proxy:
// NOOP after NOOP on one TLS session to the sink, each timed from the write
// to its 250. It holds the proxy's own lateness, TLS on both ends and the
// sink's turn, so W / this is the limit a pipelining sender can reach here,
// a little under W / the configured round trip.
import { connect } from 'node:tls';
import { median } from './common.js';

export async function effectiveRttMs(port: number, ca: string, probes = 30): Promise<number> {
  const sock = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  sock.setNoDelay(true);
  let buf = '';
  let waiter: (() => void) | undefined;
  sock.on('data', (chunk: Buffer) => {
    buf += chunk.toString('latin1');
    if (/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(buf)) {
      buf = '';
      waiter?.();
    }
  });
  const reply = (): Promise<void> =>
    new Promise((resolve, reject) => {
      waiter = resolve;
      sock.once('error', reject);
    });
  try {
    await reply(); // greeting
    const times: number[] = [];
    for (let i = 0; i < probes; i++) {
      const start = performance.now();
      const answered = reply();
      sock.write('NOOP\r\n');
      await answered;
      times.push(performance.now() - start);
    }
    return median(times);
  } finally {
    sock.destroy();
  }
}
