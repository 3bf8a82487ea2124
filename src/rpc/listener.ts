// The gRPC port. mailroom accepts connections itself and hands them to
// grpc-js (Server.createConnectionInjector), so that it can refuse what
// grpc-js would take without limit:
// - beyond MAX_GRPC_CONNECTIONS open connections, or
//   MAX_GRPC_CONNECTIONS_PER_PEER from one address, a new one is closed at
//   once, before it costs a file descriptor for long;
// - a connection that has made no successfully authenticated call within
//   GRPC_HANDSHAKE_TIMEOUT_MS of being accepted is closed, whether it sent
//   nothing, stalled in its HTTP/2 handshake, or only made calls that were
//   refused: a refused call does not make a connection welcome;
// - a connection whose calls fail authentication GRPC_MAX_AUTH_FAILURES
//   times is closed.
// A connection is handed to grpc-js with its first bytes, not before.
// Idle sessions and requests that never finish arriving are grpc-js's
// (max_connection_idle_ms) and the receive deadline's (server.ts).
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'winston';
import { addressKey, peerOf } from './peer.js';
import type { CallerVerdicts } from './auth.js';

export interface ListenerLimits {
  readonly maxConnections: number;
  readonly maxConnectionsPerPeer: number;
  readonly handshakeTimeoutMs: number;
  readonly maxAuthFailures: number;
}

interface Accepted {
  readonly sock: Socket;
  readonly address: string;
  /** runs until the connection's first authenticated call; undefined after it */
  timer: NodeJS.Timeout | undefined;
  authFailures: number;
}

export class GrpcListener implements CallerVerdicts {
  private readonly open = new Map<string, Accepted>();
  /** open connections per address (IPv6 by its /64) */
  private readonly perAddress = new Map<string, number>();
  private refusals = 0;
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

  readonly authenticated = (peer: string): void => {
    const accepted = this.open.get(peer);
    if (accepted?.timer === undefined) return;
    clearTimeout(accepted.timer);
    accepted.timer = undefined;
  };

  readonly refused = (peer: string): void => {
    const accepted = this.open.get(peer);
    if (accepted === undefined) return;
    accepted.authFailures += 1;
    if (accepted.authFailures < this.limits.maxAuthFailures) return;
    // A turn later: the refusal that made the count goes out first.
    setImmediate(() => this.drop(accepted, `${accepted.authFailures} calls failed authentication`));
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
    const address = addressKey(sock.remoteAddress ?? '');
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (this.open.size >= this.limits.maxConnections) {
      this.refuse(sock, 'MAX_GRPC_CONNECTIONS open');
      return;
    }
    if (fromAddress >= this.limits.maxConnectionsPerPeer) {
      this.refuse(sock, 'MAX_GRPC_CONNECTIONS_PER_PEER open from one address');
      return;
    }
    this.perAddress.set(address, fromAddress + 1);
    const peer = peerOf(sock.remoteAddress, sock.remotePort);
    const accepted: Accepted = { sock, address, timer: undefined, authFailures: 0 };
    accepted.timer = setTimeout(() => this.drop(accepted, `no authenticated call within ${this.limits.handshakeTimeoutMs} ms`), this.limits.handshakeTimeoutMs);
    this.open.set(peer, accepted);
    sock.on('error', () => undefined);
    sock.once('close', () => {
      clearTimeout(accepted.timer);
      this.open.delete(peer);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
    sock.once('data', (first: Buffer) => {
      sock.pause();
      sock.unshift(first);
      this.injector.injectConnection(sock);
    });
  }

  private drop(accepted: Accepted, why: string): void {
    this.log.debug(`gRPC connection closed: ${why}`);
    // TRAP: once HTTP/2 has taken the socket's handle, destroy() closes
    // nothing (the descriptor stays open and the peer never hears);
    // resetAndDestroy() does.
    accepted.sock.resetAndDestroy();
  }

  private refuse(sock: Socket, why: string): void {
    sock.on('error', () => undefined);
    sock.destroy();
    this.refusals++;
    // Once per ten seconds at most: a flood of connections must not become a flood of log lines.
    const now = Date.now();
    if (now - this.refusedLogged < 10_000) return;
    this.refusedLogged = now;
    this.log.warn(`gRPC connection refused: ${why}`, { open: this.open.size, max: this.limits.maxConnections, maxPerPeer: this.limits.maxConnectionsPerPeer, refusedSoFar: this.refusals });
  }
}
