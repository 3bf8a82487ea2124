/**
 * How many messages one session may carry before it is replaced: between
 * three quarters of the configured maximum and all of it, at random. With the
 * same cap everywhere, connections that share the load evenly reach it
 * together and re-dial at once, leaving the pool without a connection for a
 * handshake's time every `max` messages; jitter spreads those re-dials out.
 * Caps under 4 are kept exact: a quarter of them is no message at all.
 */
export function sessionCap(max: number, random: () => number = Math.random): number {
  return max - Math.floor(random() * (Math.floor(max / 4) + 1));
}
