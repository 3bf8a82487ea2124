// The supervisor's hands on the outbox store: a long-lived child that turns
// what the supervisor says (room on its connections, outcomes, the relay
// away or back, probe the store) into store calls, and reports what comes
// back (messages claimed, the store's health). The store is the one writer
// of a message's state; this child only asks.
//
// It claims only what the supervisor offered room for, so that SENDING
// means held by a connection. The offer stands until the next one: a
// message handed to the store while there is room is claimed in the same
// turn, and so in the same commit as its acceptance. It keeps the earliest
// time something falls due, and a timer for it only while there is room
// (or the relay is away and due messages are to be deferred): a due
// message with nowhere to go costs nothing until room comes. Nothing here
// retries: a store call that fails takes the store down (its health), and
// the supervisor decides when to probe it.
import { fromCallback } from 'xstate';
import type { Logger } from 'winston';
import type { MailroomError } from '../errors.js';
import { createJob, type MailJob } from '../mail/job.js';
import { CLAIM_MAX } from '../outbox/policy.js';
import type { Change, Claimed, OutboxStore, RelayAway, StoreHealth } from '../outbox/store.js';
import { simulated, type Simulator } from '../bounce/simulator.js';
import { deliveryTrace } from '../lib/tracing.js';

/** What the supervisor tells its outbox child. */
export type OutboxOrder =
  /** `room`: messages the connections could start now; `seen`: the last claim the supervisor took in; `changes`: outcomes to record */
  | { readonly type: 'offer'; readonly room: number; readonly seen: number; readonly changes: readonly Change[] }
  /** the relay is away (due messages are deferred with why and until when), or back (undefined) */
  | { readonly type: 'relay'; readonly away: RelayAway | undefined }
  | { readonly type: 'probe' };

/** What the outbox child reports. */
export type OutboxReport =
  | { readonly type: 'outbox.claimed'; readonly claimed: readonly Claimed[]; readonly seq: number }
  | { readonly type: 'outbox.health'; readonly up: boolean; readonly error: MailroomError | undefined }
  | { readonly type: 'outbox.probed'; readonly ok: boolean; readonly error: MailroomError | undefined };

export interface FeederInput {
  readonly store: OutboxStore | undefined;
  readonly log: Logger;
  readonly now: () => number;
  readonly retentionMs: number;
  /** takes the messages every recipient of which is a simulator address: they never reach a connection */
  readonly simulator?: Simulator | undefined;
}

/** due times further off than this are looked at again this soon: the outbox's clock may jump */
const LOOK_MAX_MS = 1000;
/** and nearer ones no sooner than this: a timer is never a spin */
const LOOK_MIN_MS = 20;
/** how often expired messages are failed and old records forgotten */
const HOUSEKEEPING_MS = 5000;
/** most messages one housekeeping pass fails for their age, or one pass of an outage defers */
const SLICE = 1000;

class Feeder {
  private room = 0;
  private seen = 0;
  private seq = 0;
  /** claims sent or reported, not yet taken in by the supervisor: seq → messages */
  private readonly unseen = new Map<number, number>();
  private claiming = false;
  private deferring = false;
  private nextDue: number | undefined;
  /** due times heard while a claim was out: its answer does not know them */
  private heard: number | undefined;
  private away: RelayAway | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly housekeeping: NodeJS.Timeout;
  private readonly unsubscribe: (() => void)[];

  constructor(
    private readonly store: OutboxStore,
    private readonly input: FeederInput,
    private readonly report: (event: OutboxReport) => void,
  ) {
    // After a start (or a restart) whatever the store holds is looked at once.
    this.nextDue = input.now();
    this.unsubscribe = [
      store.onSubmitted((dueAt) => this.hear(dueAt)),
      store.onHealth((health) => this.health(health)),
    ];
    this.housekeeping = setInterval(() => this.housekeep(), HOUSEKEEPING_MS);
    this.housekeeping.unref();
  }

  handle(order: OutboxOrder): void {
    switch (order.type) {
      case 'offer':
        if (order.changes.length > 0) {
          this.store.record(order.changes).then(
            (due) => this.hear(due),
            (err: unknown) => this.input.log.error('outbox: outcomes not recorded', { reason: (err as Error).message }),
          );
        }
        this.room = order.room;
        this.seen = order.seen;
        for (const seq of this.unseen.keys()) if (seq <= order.seen) this.unseen.delete(seq);
        this.pump();
        return;
      case 'relay':
        this.away = order.away;
        if (order.away === undefined) {
          // The relay is back: what waited for it is due now.
          this.store.hasten(this.input.now()).then(
            (at) => this.hear(at),
            () => undefined,
          );
        }
        this.pump();
        return;
      case 'probe':
        this.store.probe().then(
          () => {
            this.report({ type: 'outbox.probed', ok: true, error: undefined });
            this.nextDue = this.input.now();
            this.pump();
          },
          (err: unknown) => this.report({ type: 'outbox.probed', ok: false, error: err as MailroomError }),
        );
        return;
    }
  }

  private health(health: StoreHealth): void {
    this.report({ type: 'outbox.health', up: health.up, error: health.error });
  }

  /** Something falls due at `at` (new messages, the relay back, a deferral's answer). */
  private hear(at: number | undefined): void {
    if (at === undefined) return;
    this.nextDue = Math.min(this.nextDue ?? at, at);
    if (this.claiming) this.heard = Math.min(this.heard ?? at, at);
    this.pump();
  }

  /** What the supervisor offered, less what it was sent and has not taken in yet. */
  private available(): number {
    let out = 0;
    for (const n of this.unseen.values()) out += n;
    return this.room - out;
  }

  /** Claims (or, with the relay away, defers) what is due, as far as the offer goes; else waits for the next due time. */
  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.store.health.up || this.claiming || this.deferring || this.nextDue === undefined) return;
    const now = this.input.now();
    if (this.away !== undefined) {
      if (this.nextDue <= now) this.defer(now, this.away);
      else this.wake(now);
      return;
    }
    const n = Math.min(CLAIM_MAX, this.available());
    if (n <= 0) return;
    if (this.nextDue > now) {
      this.wake(now);
      return;
    }
    this.claim(n, now);
  }

  private wake(now: number): void {
    const due = this.nextDue;
    if (due === undefined) return;
    this.timer = setTimeout(() => this.pump(), Math.max(LOOK_MIN_MS, Math.min(LOOK_MAX_MS, due - now)));
    this.timer.unref();
  }

  private claim(n: number, now: number): void {
    const seq = ++this.seq;
    this.claiming = true;
    this.heard = undefined;
    this.unseen.set(seq, n);
    this.store.claim(n, now).then(
      ({ claimed: all, nextDue }) => {
        this.claiming = false;
        this.nextDue = minOf(nextDue, this.heard);
        const claimed = this.simulate(all);
        if (claimed.length === 0) this.unseen.delete(seq);
        else {
          this.unseen.set(seq, claimed.length);
          this.report({ type: 'outbox.claimed', claimed, seq });
        }
        this.pump();
      },
      () => {
        // The store went down with it (its health says so); the supervisor probes it later.
        this.claiming = false;
        this.unseen.delete(seq);
      },
    );
  }

  /** The simulator's messages get their outcome here, recorded as a connection's would be; the rest go on. */
  private simulate(claimed: readonly Claimed[]): readonly Claimed[] {
    const simulator = this.input.simulator;
    if (simulator === undefined) return claimed;
    const taken = claimed.filter((c) => simulated(c.envelope.to));
    if (taken.length === 0) return claimed;
    const changes = taken.map((c) => simulator.attempt(c));
    this.store.record(changes).then(
      (due) => {
        taken.forEach((c, i) => {
          if (changes[i]?.event === 'DELIVERED') simulator.delivered(c);
        });
        this.hear(due);
      },
      (err: unknown) => this.input.log.error('outbox: outcomes not recorded', { reason: (err as Error).message }),
    );
    return claimed.filter((c) => !simulated(c.envelope.to));
  }

  private defer(now: number, away: RelayAway): void {
    this.deferring = true;
    this.store.deferDue(now, SLICE, away).then(
      (next) => {
        this.deferring = false;
        this.nextDue = next;
        this.pump();
      },
      () => {
        this.deferring = false;
      },
    );
  }

  private housekeep(): void {
    if (!this.store.health.up) return;
    const now = this.input.now();
    this.store
      .expire(now, SLICE)
      .then(async (expired) => {
        if (expired > 0) this.input.log.info('outbox: messages expired', { expired });
        await this.store.purge(now - this.input.retentionMs);
      })
      .catch(() => undefined);
  }

  close(): void {
    clearTimeout(this.timer);
    clearInterval(this.housekeeping);
    for (const u of this.unsubscribe) u();
  }
}

function minOf(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

export const outboxFeeder = fromCallback<OutboxOrder, FeederInput>(({ input, sendBack, receive }) => {
  // Without an outbox nothing is asked of it (queued sends are refused before they get here).
  if (input.store === undefined) return () => undefined;
  const feeder = new Feeder(input.store, input, (event) => sendBack(event));
  receive((order) => feeder.handle(order));
  return () => feeder.close();
});

/** Claimed messages as jobs: no caller waits on them, and they have no deadline but their expiry. */
export function claimedJobs(claimed: readonly Claimed[]): MailJob[] {
  return claimed.map(
    (c) => createJob({ messageId: c.id, envelope: c.envelope, raw: c.raw }, { deadline: Infinity, caller: c.caller, owner: c.owner, lane: c.lane, durable: { expiresAt: c.expiresAt }, trace: deliveryTrace(c.trace) }).job,
  );
}
