// The supervisor's view of its connections: which are up, how many jobs
// each said it could hold, which hold nothing and for how long, which have
// closed. What each one holds is the ledger's business (job-ledger.ts);
// what each can take is the difference.
import type { JobLedger } from './job-ledger.js';
import type { SmtpConnectionActor } from './smtp-connection.js';

interface Member {
  ref: SmtpConnectionActor;
  /** jobs it said it could hold, those it holds included */
  capacity: number;
  up: boolean;
  /** it has reported at least once (ready or down): its first dial is over */
  tried: boolean;
  /** its last dial found the relay unreachable or refusing us (a session lost, or a handshake cut short, re-dials before it is judged) */
  refused: boolean;
  closed: boolean;
  /** times its actor crashed, for the respawn backoff and the new actor's id */
  crashes: number;
  /** while down: when it dials again (epoch ms) */
  retryAt: number | undefined;
}

export class Pool {
  private readonly members = new Map<string, Member>();
  /** up, holding nothing, able to take a job: longest idle first */
  private readonly idle: string[] = [];
  private upCount = 0;

  constructor(private readonly ledger: JobLedger) {}

  add(cid: string, ref: SmtpConnectionActor): void {
    this.members.set(cid, { ref, capacity: 0, up: false, tried: false, refused: false, closed: false, crashes: 0, retryAt: undefined });
  }

  /** Its actor crashed and a new one takes its place. */
  replace(cid: string, ref: SmtpConnectionActor): void {
    this.member(cid).ref = ref;
  }

  has(cid: string): boolean {
    return this.members.has(cid);
  }

  ref(cid: string): SmtpConnectionActor {
    return this.member(cid).ref;
  }

  refs(): SmtpConnectionActor[] {
    return [...this.members.values()].map((m) => m.ref);
  }

  /** some connection is up, holds nothing and can take a job */
  get hasIdle(): boolean {
    return this.idle.length > 0;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** when the next connection that is down dials again (epoch ms); undefined when none will */
  get nextDial(): number | undefined {
    let next: number | undefined;
    for (const m of this.members.values()) if (!m.up && !m.closed && m.retryAt !== undefined) next = Math.min(next ?? m.retryAt, m.retryAt);
    return next;
  }

  get up(): number {
    return this.upCount;
  }

  /** jobs the connections that are up could take now, beyond what they hold */
  get free(): number {
    let free = 0;
    for (const [cid, m] of this.members) if (m.up) free += Math.max(0, m.capacity - this.ledger.holding(cid));
    return free;
  }

  /** every connection has finished its first dial, one way or the other */
  get allTried(): boolean {
    for (const m of this.members.values()) if (!m.tried) return false;
    return true;
  }

  /** no connection is up, and the last dial of every one that is not closed found the relay unreachable or refusing */
  get unreachable(): boolean {
    let open = 0;
    for (const m of this.members.values()) {
      if (m.closed) continue;
      if (m.up || !m.refused) return false;
      open++;
    }
    return open > 0;
  }

  get allClosed(): boolean {
    for (const m of this.members.values()) if (!m.closed) return false;
    return true;
  }

  /** It is authenticated and asks for work. Returns whether it was down until now. */
  ready(cid: string, capacity: number): boolean {
    const m = this.member(cid);
    m.capacity = capacity;
    m.tried = true;
    m.refused = false;
    if (this.ledger.holding(cid) === 0 && capacity > 0 && !this.idle.includes(cid)) this.idle.push(cid);
    if (m.up) return false;
    m.up = true;
    this.upCount++;
    return true;
  }

  /** What it can hold now, as its last report said: one that holds nothing and has room is idle. */
  offer(cid: string, capacity: number): void {
    const m = this.member(cid);
    m.capacity = capacity;
    if (m.up && capacity > 0 && this.ledger.holding(cid) === 0 && !this.idle.includes(cid)) this.idle.push(cid);
  }

  /** Its session is gone, or its dial failed (`refused`: see Member); it dials again at `retryAt`. Returns whether it was up until now. */
  down(cid: string, refused = false, retryAt?: number): boolean {
    const m = this.member(cid);
    m.capacity = 0;
    m.tried = true;
    m.refused = refused;
    m.retryAt = retryAt;
    this.leaveIdle(cid);
    if (!m.up) return false;
    m.up = false;
    this.upCount--;
    return true;
  }

  closed(cid: string): void {
    this.down(cid);
    this.member(cid).closed = true;
  }

  crashed(cid: string): number {
    return ++this.member(cid).crashes;
  }

  crashes(cid: string): number {
    return this.member(cid).crashes;
  }

  /**
   * The connection a job goes to: an idle one first, longest idle first but
   * not the one the job just failed on when another is idle; else, when
   * `busyToo`, a busy one with room (its envelope then goes out behind the
   * dot of the message under way). Undefined when none can take it.
   *
   * TRAP: the first busy one with room, not the one holding the fewest:
   * spreading jobs evenly makes every connection's writes and reads carry
   * fewer messages each, measured at +26% CPU a mail at C=100, and a code
   * gained nothing measurable from it (bench --only=lanes).
   */
  pick(avoid: string | undefined, busyToo: boolean): string | undefined {
    if (this.idle.length > 0) {
      const index = avoid !== undefined && this.idle[0] === avoid && this.idle.length > 1 ? 1 : 0;
      return this.idle.splice(index, 1)[0];
    }
    if (!busyToo) return undefined;
    for (const [cid, m] of this.members) {
      if (m.up && m.capacity > this.ledger.holding(cid)) return cid;
    }
    return undefined;
  }

  private leaveIdle(cid: string): void {
    const i = this.idle.indexOf(cid);
    if (i >= 0) this.idle.splice(i, 1);
  }

  private member(cid: string): Member {
    const m = this.members.get(cid);
    if (m === undefined) throw new Error(`no connection ${cid} in the pool`);
    return m;
  }
}
