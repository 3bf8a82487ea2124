// A TCP proxy that puts distance between a sender and its relay: every chunk
// is held for half the round trip in each direction before it is passed on,
// in order, so every exchange (TCP, the TLS handshake, each SMTP reply) pays
// the round trip as it would against a relay 10-100 ms away. Run in its own
// process: node dist/bench/delay-proxy.js '{"target":<port>,"rttMs":20}'.
import { connect, createServer, type Socket } from 'node:net';

interface ProxyOptions {
  readonly target: number;
  readonly rttMs: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as ProxyOptions;
const half = options.rttMs / 2;

/**
 * Passes `from`'s bytes to `to`, each chunk `half` ms after it arrived, in
 * order. A timer fires a millisecond or so late, which at 20 ms is 5-10% of
 * the distance: it is set 1.5 ms early, and the last stretch is waited out
 * turn by turn (setImmediate), so a chunk leaves within ~0.2 ms of its time.
 */
function delayed(from: Socket, to: Socket): void {
  const queue: { at: number; chunk: Buffer }[] = [];
  let pending = false;
  const flush = (): void => {
    const now = performance.now();
    while (queue.length > 0 && (queue[0] as { at: number }).at <= now + 0.1) to.write((queue.shift() as { chunk: Buffer }).chunk);
    const head = queue[0];
    if (head === undefined) {
      pending = false;
      return;
    }
    const wait = head.at - now;
    if (wait > 2) setTimeout(flush, wait - 1.5);
    else setImmediate(flush);
  };
  from.on('data', (chunk: Buffer) => {
    if (half <= 0) {
      to.write(chunk);
      return;
    }
    queue.push({ at: performance.now() + half, chunk });
    if (!pending) {
      pending = true;
      setTimeout(flush, half - 1.5);
    }
  });
  from.on('end', () => {
    const end = (): void => {
      if (queue.length > 0) setTimeout(end, half);
      else to.end();
    };
    end();
  });
}

const server = createServer((client) => {
  client.setNoDelay(true);
  const relay = connect(options.target, '127.0.0.1');
  relay.setNoDelay(true);
  const close = (): void => {
    client.destroy();
    relay.destroy();
  };
  client.on('error', close);
  relay.on('error', close);
  client.on('close', () => setTimeout(() => relay.destroy(), half + 5));
  relay.on('close', () => setTimeout(() => client.destroy(), half + 5));
  delayed(client, relay);
  delayed(relay, client);
});
server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'listening', port: (server.address() as { port: number }).port });
});
process.on('disconnect', () => process.exit(0));
