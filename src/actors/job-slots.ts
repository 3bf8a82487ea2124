// One job per connection, as the supervisor keeps them: the job a connection
// is sending, and the next one it sends after it.
//
// TRAP: not a Map. A Map that gains and loses an entry for every mail is
// rebuilt by V8 every few mails, and the table it leaves behind keeps the
// entries it held. That table sits in old space, dead until the next full
// GC, and every scavenge until then treats it as a root: each job it held,
// and all that job reaches (the message, the gRPC call and its stream), was
// copied and then promoted. Measured on the SendMail benchmark: about 10 KB
// promoted per mail, scavenges of 2-5 ms every ~40 ms, and a full GC with an
// 8-16 ms pause every ~2 s. Here each connection has one slot for life and a
// job is a field written in place, so nothing keeps a finished job alive.
import type { MailJob } from '../mail/job.js';

interface Slot {
  job: MailJob | undefined;
}

/** cid → job, with the subset of Map's interface the supervisor uses. */
export class JobSlots {
  private readonly slots = new Map<string, Slot>();
  /** cids that hold a job, in the order they got it: the longest busy first */
  private readonly order: string[] = [];

  get size(): number {
    return this.order.length;
  }

  get(cid: string): MailJob | undefined {
    return this.slots.get(cid)?.job;
  }

  has(cid: string): boolean {
    return this.get(cid) !== undefined;
  }

  /** Like Map.set: a cid that holds a job already keeps its place in the order. */
  set(cid: string, job: MailJob): void {
    let slot = this.slots.get(cid);
    if (slot === undefined) {
      slot = { job: undefined };
      this.slots.set(cid, slot);
    }
    if (slot.job === undefined) this.order.push(cid);
    slot.job = job;
  }

  delete(cid: string): boolean {
    const slot = this.slots.get(cid);
    if (slot?.job === undefined) return false;
    slot.job = undefined;
    this.order.splice(this.order.indexOf(cid), 1);
    return true;
  }

  /** The cids that hold a job, longest busy first; not to be changed while iterated. */
  keys(): readonly string[] {
    return this.order;
  }

  /** The jobs held, longest busy first, as a copy. */
  values(): MailJob[] {
    return this.order.map((cid) => this.slots.get(cid)?.job as MailJob);
  }

  clear(): void {
    for (const slot of this.slots.values()) slot.job = undefined;
    this.order.length = 0;
  }
}
