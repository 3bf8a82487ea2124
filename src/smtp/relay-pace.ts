// How fast the pool sends to its relay. SEND_RATE_LIMIT_PER_SECOND, when
// set, is the ceiling; below it, the relay has its say: a temporary failure
// that says "slow down" (421 or 451 4.7.x "too many messages", "rate
// limited", also as the reason a relay closes the session) halves the pace, once a reaction
// window (replies to what was already in flight say the same thing again),
// and every RELAY_PACE_RECOVER_MS of clean replies adds a step back
// (additive increase, multiplicative decrease: the pace settles under what
// the relay takes). Once it has climbed to twice where it was cut, with no
// ceiling, the relay is taken at its word and the pace is free again.
// Nothing here fails a message: the supervisor puts a slowed one back.
import type { MailroomError, SmtpReply } from '../errors.js';
import { TokenBucket } from '../lib/token-bucket.js';

/** the slowest pace a relay can push us to: a message a second */
const FLOOR = 1;
/** deliveries looked at to know the pace being sent at when the first "slow down" comes */
const WINDOW_MS = 1000;
const SLOTS = 10;
/** bursts: at most this share of a second's pace at once */
const BURST_MS = 100;

/** Whether a reply (or a loss's reason) asks us to slow down. */
export function saysSlowDown(reply: SmtpReply | undefined): boolean {
  return reply !== undefined && reply.code >= 400 && reply.code < 500 && SLOW_DOWN.test(reply.text);
}

/** what relays say when they mean it: "too many messages", "rate limited", "slow down", "throttled" */
const SLOW_DOWN = /too many|\brate\b|rate[- ]limit|slow down|throttl/i;

export function isSlowDown(error: MailroomError): boolean {
  return saysSlowDown(error.smtp);
}

export class RelayPace {
  /** messages a second now, the ceiling included; undefined: no limit */
  perSecond: number | undefined;
  /** the relay asked us to slow down, and the pace has not climbed back */
  throttled = false;
  private bucket: TokenBucket | undefined;
  /** where the last cut came from: the pace is free again at twice this */
  private cutFrom = 0;
  private lastCut = -Infinity;
  private lastStep = 0;
  /** deliveries in each tenth of the last WINDOW_MS (a ring), and which tenth each slot holds */
  private readonly counts = new Array<number>(SLOTS).fill(0);
  private readonly slots = new Array<number>(SLOTS).fill(-1);

  constructor(
    /** SEND_RATE_LIMIT_PER_SECOND; 0: none */
    private readonly ceiling: number,
    /** clean replies for this long add a step */
    private readonly recoverMs: number,
    now: number,
  ) {
    this.perSecond = ceiling > 0 ? ceiling : undefined;
    // The configured ceiling allows a quiet second's burst, as providers' own limits do.
    this.bucket = ceiling > 0 ? new TokenBucket(ceiling, 1000, now) : undefined;
  }

  /** a pace is in force (jobs go one at a time, as it allows) */
  get limited(): boolean {
    return this.bucket !== undefined;
  }

  /** Takes a turn and returns 0, or returns the ms until one is free. */
  take(now: number): number {
    return this.bucket === undefined ? 0 : this.bucket.take(now);
  }

  /** A clean reply: counted, and while slowed, a step back up each recoverMs. */
  delivered(now: number): void {
    const slot = Math.floor(now / (WINDOW_MS / SLOTS));
    const i = slot % SLOTS;
    if (this.slots[i] !== slot) {
      this.slots[i] = slot;
      this.counts[i] = 0;
    }
    (this.counts[i] as number)++;
    if (!this.throttled || now - Math.max(this.lastStep, this.lastCut) < this.recoverMs) return;
    this.lastStep = now;
    const step = Math.max(1, Math.ceil(this.cutFrom / 20));
    const next = (this.perSecond ?? 0) + step;
    if (this.ceiling > 0 && next >= this.ceiling) {
      this.perSecond = this.ceiling;
      this.throttled = false;
      this.bucket = new TokenBucket(this.ceiling, 1000, now);
    }
    else if (this.ceiling === 0 && next >= 2 * this.cutFrom) this.set(undefined, now, false);
    else this.set(next, now, true);
  }

  /** The relay said slow down: the pace halves (once a reaction window). Returns whether it did. */
  slowDown(now: number): boolean {
    if (this.throttled && now - this.lastCut < Math.max(WINDOW_MS, this.recoverMs)) return false;
    const from = this.throttled ? (this.perSecond as number) : Math.min(this.perSecond ?? Infinity, Math.max(FLOOR * 2, this.lastSecond(now)));
    this.cutFrom = from;
    this.lastCut = now;
    this.set(Math.max(FLOOR, Math.floor(from / 2)), now, true);
    return true;
  }

  /** Deliveries over the last WINDOW_MS. */
  private lastSecond(now: number): number {
    const slot = Math.floor(now / (WINDOW_MS / SLOTS));
    let n = 0;
    for (let i = 0; i < SLOTS; i++) if ((this.slots[i] as number) > slot - SLOTS) n += this.counts[i] as number;
    return n;
  }

  private set(perSecond: number | undefined, now: number, throttled: boolean): void {
    this.perSecond = perSecond;
    this.throttled = throttled;
    this.bucket = perSecond === undefined ? undefined : this.bucketAt(perSecond, now);
  }

  private bucketAt(perSecond: number, now: number): TokenBucket {
    // A window that holds at least one whole turn: at 5 a second, one each 200 ms.
    const windowMs = Math.max(BURST_MS, 1000 / perSecond);
    return new TokenBucket((perSecond * windowMs) / 1000, windowMs, now);
  }
}
