// Where a call or a connection comes from, as the per-address limits count
// it: grpc-js names a call's peer "<address>:<port>" (ServerInterceptingCall
// .getPeer), and one host is one IPv4 address or one IPv6 /64 (a host is
// handed a whole /64, so counting its addresses one by one counts nothing).
import { isIPv6 } from 'node:net';

/** How grpc-js names the peer of a connection's calls; a call finds its connection by it. */
export function peerOf(address: string | undefined, port: number | undefined): string {
  return `${address ?? ''}:${port ?? ''}`;
}

/** The address part of a grpc-js peer ("1.2.3.4:5678", "::1:5678"). */
export function peerAddress(peer: string): string {
  const colon = peer.lastIndexOf(':');
  const address = colon < 0 ? peer : peer.slice(0, colon);
  return address.replace(/^\[|\]$/g, '');
}

/** An IPv6 address by its first 64 bits; IPv4 (and IPv4-mapped) as it is. */
export function addressKey(address: string): string {
  if (!isIPv6(address) || address.toLowerCase().startsWith('::ffff:')) return address.replace(/^::ffff:/i, '');
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}


/** 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}
