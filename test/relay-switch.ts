// A relay that goes away and comes back on the same port: a TCP front that
// forwards to a real SMTP server while on, and while off refuses every
// connection (nothing listens) after cutting the ones it carried, as a
// relay that restarts does.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

export class RelaySwitch {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly target: number,
    public port: number,
  ) {}

  /** Starts on (a port the OS picks), forwarding to the relay on `target`. */
  static async start(target: number): Promise<RelaySwitch> {
    const relay = new RelaySwitch(target, 0);
    await relay.on();
    return relay;
  }

  async on(): Promise<void> {
    if (this.server !== undefined) return;
    const server = createServer((client) => this.forward(client));
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Cuts every connection and stops listening: a dial is refused until on(). */
  async off(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private forward(client: Socket): void {
    const upstream = connect(this.target, '127.0.0.1');
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      this.sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }
}
