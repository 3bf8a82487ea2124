// A line that repeats (the same level, message and code, from the same
// component) is written at most once a second once it has used a burst of
// BURST (a state that flaps, a signal sent twice, is still told each time);
// what is held back meanwhile is summed up in one line ten seconds on
// ("… 9,812 more in the last 10 s"). A fault that lasts must never become a
// log that fills the disk it is about. Bounded: at most MAX_KEYS lines are
// followed at once.
export interface Repeatable {
  readonly level: string;
  readonly message: unknown;
  readonly [key: string]: unknown;
}

interface Seen {
  /** lines it may write now: BURST at most, one more a second */
  tokens: number;
  /** when the tokens were last counted */
  written: number;
  /** held back since then, and since when */
  held: number;
  heldSince: number;
  readonly level: string;
  readonly message: string;
  readonly component: unknown;
}

const WINDOW_MS = 1000;
const BURST = 3;
const SUMMARY_MS = 10_000;
const MAX_KEYS = 1000;

export class RepeatLimiter {
  private readonly seen = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** writes a summary line (not limited itself) */
    private readonly summarize: (line: { level: string; message: string; component: unknown; held: number; seconds: number }) => void,
    private readonly now: () => number = Date.now,
    /** how long after the first line held back its summary is written */
    private readonly summaryMs = SUMMARY_MS,
  ) {}

  /** Whether `line` is written now; false: it is held back, and counted. */
  allow(line: Repeatable): boolean {
    const message = String(line.message);
    const key = `${line.level}\u0000${String(line.component ?? '')}\u0000${String(line.code ?? '')}\u0000${message}`;
    const now = this.now();
    const seen = this.seen.get(key);
    if (seen === undefined) {
      if (this.seen.size >= MAX_KEYS) this.flush(true);
      this.seen.set(key, { tokens: BURST - 1, written: now, held: 0, heldSince: 0, level: line.level, message, component: line.component });
      return true;
    }
    seen.tokens = Math.min(BURST, seen.tokens + (now - seen.written) / WINDOW_MS);
    seen.written = now;
    if (seen.tokens >= 1 && seen.held === 0) {
      seen.tokens -= 1;
      return true;
    }
    if (seen.held === 0) seen.heldSince = now;
    seen.held++;
    this.timer ??= setTimeout(() => this.flush(false), this.summaryMs).unref();
    return false;
  }

  /** Writes the summaries of what was held back; forgets lines that have gone quiet (all of them when `all`). */
  private flush(all: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.now();
    for (const [key, seen] of this.seen) {
      if (seen.held > 0) {
        this.summarize({ level: seen.level, message: seen.message, component: seen.component, held: seen.held, seconds: Math.max(1, Math.round((now - seen.heldSince) / 1000)) });
        seen.held = 0;
        seen.tokens = 0;
        seen.written = now;
      } else if (all || now - seen.written > this.summaryMs) {
        this.seen.delete(key);
      }
    }
    if ([...this.seen.values()].some((s) => s.held > 0)) this.timer = setTimeout(() => this.flush(false), this.summaryMs).unref();
  }
}
