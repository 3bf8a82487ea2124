// The gRPC port. mailroom accepts connections itself and hands them to
// grpc-js (Server.createConnectionInjector), so that it can refuse what
// grpc-js would take without limit: beyond MAX_GRPC_CONNECTIONS open
// connections a new one is closed at once, before it costs a file
// descriptor for long; a connection that sends nothing within
// GRPC_HANDSHAKE_TIMEOUT_MS of being accepted is closed, and so is one that
// started its handshake but has begun no call within GRPC_IDLE_TIMEOUT_MS
// (its HTTP/2 session may never have formed, so grpc-js's own idle timer,
// which starts with the session, would never fire). A connection is handed
// to grpc-js with its first bytes, not before: a client that connects and
// only calls later (waitForReady, a busy process) is not taken for a silent
// one. Idle sessions and requests that never finish arriving are grpc-js's
// (max_connection_idle_ms) and the receive deadline's (server.ts).
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';

export interface ListenerLimits {
  readonly maxConnections: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

interface Accepted {
  readonly sock: Socket;
  /** runs until the connection's first bytes, then until its first call; undefined after it */
  timer: NodeJS.Timeout | undefined;
}

/** How grpc-js names a call's peer (ServerInterceptingCall.getPeer), which is how a call finds its connection. */
function peerOf(address: string | undefined, port: number | undefined): string {
  return `${address ?? ''}:${port ?? ''}`;
}

export class GrpcListener {
  private readonly open = new Map<string, Accepted>();
  private refused = 0;
  private refusedLogged = 0;

  private constructor(
    private readonly net: NetServer,
    private readonly injector: ReturnType<grpc.Server['createConnectionInjector']>,
    private readonly limits: ListenerLimits,
    private readonly log: Logger,
  ) {}

  static listen(server: grpc.Server, credentials: grpc.ServerCredentials, host: string, port: number, limits: ListenerLimits, log: Logger): Promise<GrpcListener> {
    const injector = server.createConnectionInjector(credentials);
    const net = createServer();
    const listener = new GrpcListener(net, injector, limits, log);
    net.on('connection', (sock) => listener.accept(sock));
    return new Promise((resolve, reject) => {
      net.once('error', (err) => {
        injector.destroy();
        reject(err);
      });
      net.listen(port, host, () => {
        net.on('error', (err) => log.error('gRPC listener error', { reason: err.message }));
        resolve(listener);
      });
    });
  }

  get port(): number {
    return (this.net.address() as AddressInfo).port;
  }

  get connections(): number {
    return this.open.size;
  }

  /** A call began from `peer`: its connection is past its handshake. */
  readonly started = (peer: string): void => {
    const accepted = this.open.get(peer);
    if (accepted?.timer === undefined) return;
    clearTimeout(accepted.timer);
    accepted.timer = undefined;
  };

  /** Stops accepting; connections already open are grpc-js's to drain. */
  close(): Promise<void> {
    return new Promise((resolve) => this.net.close(() => resolve()));
  }

  /** Drops every connection still open (after the drain). */
  destroy(): void {
    this.injector.destroy();
    for (const { sock } of this.open.values()) sock.resetAndDestroy();
  }

  private accept(sock: Socket): void {
    if (this.open.size >= this.limits.maxConnections) {
      this.refuse(sock);
      return;
    }
    const peer = peerOf(sock.remoteAddress, sock.remotePort);
    const accepted: Accepted = { sock, timer: undefined };
    // TRAP: once HTTP/2 has taken the socket's handle, destroy() closes
    // nothing (the descriptor stays open and the peer never hears);
    // resetAndDestroy() does.
    const drop = (why: string): void => {
      this.log.debug(`gRPC connection closed: ${why}`);
      sock.resetAndDestroy();
    };
    accepted.timer = setTimeout(() => drop(`nothing sent within ${this.limits.handshakeTimeoutMs} ms`), this.limits.handshakeTimeoutMs);
    this.open.set(peer, accepted);
    sock.on('error', () => undefined);
    sock.once('close', () => {
      clearTimeout(accepted.timer);
      this.open.delete(peer);
    });
    sock.once('data', (first: Buffer) => {
      clearTimeout(accepted.timer);
      sock.pause();
      sock.unshift(first);
      accepted.timer = setTimeout(() => drop(`no call within ${this.limits.idleTimeoutMs} ms`), this.limits.idleTimeoutMs);
      this.injector.injectConnection(sock);
    });
  }

  private refuse(sock: Socket): void {
    sock.on('error', () => undefined);
    sock.destroy();
    this.refused++;
    // Once per ten seconds at most: a flood of connections must not become a flood of log lines.
    const now = Date.now();
    if (now - this.refusedLogged < 10_000) return;
    this.refusedLogged = now;
    this.log.warn('gRPC connection refused: MAX_GRPC_CONNECTIONS open', { open: this.open.size, max: this.limits.maxConnections, refusedSoFar: this.refused });
  }
}
