// How many whole messages (BDAT) a connection should keep in flight: enough
// to cover the round trip at the rate the relay takes them. A message's
// shortest wait for its reply is the round trip plus the relay's own time
// for one message (queueing behind others only adds to it); the rate is
// what the relay answered over the last completions. Their product is what
// one round trip holds (Little's law); half as much again covers the jitter,
// and one more keeps the relay busy while the next group travels. At no
// distance the product is about one, and the configured depth stands.
//
// The shortest wait is kept for the connection's life: while the pipe is
// full, waits grow with the queue at the relay, and a depth learned from
// them would feed itself.

/** completions the rate is measured over */
const WINDOW = 32;
/** fewer completions say nothing yet */
const LEAST = 8;
/** the round trip's worth in flight, and this much again */
const HEADROOM = 1.5;

export class Pace {
  private shortestMs = Infinity;
  /** when the last WINDOW replies came, oldest first (a ring) */
  private readonly at: number[] = [];
  private next = 0;

  /** A whole message's reply came `waitedMs` after it was written, at `now` (ms). */
  observe(waitedMs: number, now: number): void {
    if (waitedMs >= 0 && waitedMs < this.shortestMs) this.shortestMs = waitedMs;
    if (this.at.length < WINDOW) this.at.push(now);
    else this.at[this.next] = now;
    this.next = (this.next + 1) % WINDOW;
  }

  /** The depth for now, within [least, most]; `least` until there is enough to go on. */
  depth(least: number, most: number): number {
    const n = this.at.length;
    if (n < LEAST || !Number.isFinite(this.shortestMs)) return least;
    const oldest = n < WINDOW ? (this.at[0] as number) : (this.at[this.next] as number);
    const newest = this.at[(this.next + n - 1) % n] as number;
    const span = newest - oldest;
    if (span <= 0) return least;
    const perMs = (n - 1) / span;
    return Math.max(least, Math.min(most, Math.ceil(HEADROOM * perMs * this.shortestMs) + 1));
  }
}
