// The inspection bus: xstate's inspection events from every actor of the
// system (attached at boot, to both root actors; children inherit it),
// turned into small redacted records at once, kept in a ring of the last
// INSPECT_BUFFER, and handed in batches (every 100 ms) to whoever listens:
// the inspector page, the Stately bridge. Nothing it keeps points at a job,
// a message or a session. It knows every live actor and its machine, so a
// viewer that attaches later gets the definitions and the current states
// (xstate's own @xstate.actor event fires only at creation).
import type { ActorRefLike, AnyActorRef, AnyStateMachine, InspectionEvent } from 'xstate';
import { redact, type RedactOptions } from './redact.js';
import type { ActorInfo, Hello, InspectRecord, StateValue } from './protocol.js';
import { messageMachine } from '../outbox/lifecycle.js';
import type { StatusEvent } from '../outbox/store.js';

interface Live {
  readonly ref: ActorRefLike;
  readonly info: { actor: string; parent?: string; machine?: string; state?: StateValue };
}

export type Listener = (records: readonly InspectRecord[]) => void;

const FLUSH_MS = 100;

/** Inspection events carry ActorRefLike; xstate's actors are full refs (id, parent) with their logic. */
function isActorRef(ref: ActorRefLike): ref is AnyActorRef & { readonly logic: unknown } {
  return 'id' in ref && 'logic' in ref;
}

function isMachine(src: unknown): src is AnyStateMachine {
  return typeof src === 'object' && src !== null && 'root' in src && 'id' in src;
}

/** "supervisor/c1/courier": ids from the root down. */
function pathOf(ref: AnyActorRef): string {
  const parts: string[] = [];
  for (let r: AnyActorRef | undefined = ref; r !== undefined; r = r._parent) parts.unshift(r.id);
  return parts.join('/');
}

/**
 * The event's fields but its type, redacted, two levels deep (a job's id
 * and attempts, a reply's codes: what the page shows), undefined when
 * nothing is left. Every record pays for this at the rate of mail, so it
 * stays shallow; a context on request goes deeper.
 */
function payload(event: { type: string }, o: RedactOptions): InspectRecord['data'] {
  const { type: _type, ...rest } = event as Record<string, unknown>;
  if (Object.keys(rest).length === 0) return undefined;
  const data = redact(rest, { ...o, depth: 2 });
  return data !== null && typeof data === 'object' && Object.keys(data).length === 0 ? undefined : data;
}

export class InspectionBus {
  private readonly ring: (InspectRecord | undefined)[];
  private next = 0;
  private seq = 0;
  private readonly live = new Map<ActorRefLike, Live>();
  private readonly machines = new Map<string, AnyStateMachine>();
  private readonly listeners = new Set<Listener>();
  private batch: InspectRecord[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    capacity: number,
    readonly redaction: RedactOptions,
  ) {
    this.ring = new Array<InspectRecord | undefined>(capacity);
    // Messages are rows, not actors: their chart is known from the start.
    this.machines.set(messageMachine.id, messageMachine);
  }

  /**
   * xstate's inspect option: attach to each root actor. xstate calls it
   * inside the actors' own steps, so it must never throw: a fault here
   * turns inspection off (and says so once) instead of failing an actor.
   */
  readonly inspect = (ev: InspectionEvent): void => {
    if (this.broken !== undefined) return;
    try {
      this.take(ev);
    } catch (err) {
      this.broken = err instanceof Error ? err : new Error(String(err));
      this.onBroken?.(this.broken);
    }
  };

  /** set when inspection failed and turned itself off */
  broken: Error | undefined;
  onBroken: ((err: Error) => void) | undefined;

  private take(ev: InspectionEvent): void {
    switch (ev.type) {
      case '@xstate.actor':
        this.register(ev.actorRef);
        return;
      case '@xstate.snapshot': {
        const live = this.live.get(ev.actorRef);
        if (live === undefined) return;
        const snapshot = ev.snapshot as { value?: StateValue; status?: string };
        if (live.info.machine !== undefined) {
          const from = live.info.state;
          live.info.state = snapshot.value;
          this.record({ kind: 'step', actor: live.info.actor, type: ev.event.type, from, to: snapshot.value, data: payload(ev.event, this.redaction) });
        }
        if (snapshot.status !== undefined && snapshot.status !== 'active') this.unregister(ev.actorRef, live);
        return;
      }
      case '@xstate.event': {
        const live = this.live.get(ev.actorRef);
        // A machine's events are recorded with the step they cause; a
        // child's requests (deliver, settle, checks) by their type: what
        // they carry, the machine's step shows.
        if (live === undefined || live.info.machine !== undefined) return;
        this.record({ kind: 'event', actor: live.info.actor, type: ev.event.type });
        return;
      }
      default:
    }
  }

  /** how many listen now (the inspector's streams share one) */
  get subscribers(): number {
    return this.listeners.size;
  }

  /**
   * Queued messages changed state (the outbox's committed events): one
   * record each, on the message machine's chart. Records carry no subject,
   * body or address; the relay's reply is masked like everything else.
   */
  messages(events: readonly StatusEvent[]): void {
    if (this.broken !== undefined) return;
    for (const { status, connection } of events) {
      // A delivery report after SENT shows as its own step: the latest report, its kind the event's name.
      const bounces = status.bounces ?? [];
      const latest = bounces[bounces.length - 1];
      const data = redact({ attempts: status.attempts, reply: status.lastResponse, code: status.errorCode, cid: connection, nextAttemptAt: status.nextAttemptAt, ...(latest !== undefined ? { bounces: bounces.slice(-5) } : {}) }, this.redaction);
      const type = latest !== undefined && latest.at === status.updatedAt ? (latest.kind === 'complaint' ? 'COMPLAIN' : latest.kind === 'hard' ? 'BOUNCE' : 'SOFT_BOUNCE') : status.state;
      this.record({ kind: 'message', actor: 'outbox', machine: messageMachine.id, message: status.id, to: status.state, type, ...(data !== undefined ? { data } : {}) });
    }
  }

  /** Batches of records as they come, until the returned function is called. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    this.timer ??= setInterval(() => this.flush(), FLUSH_MS);
    this.timer.unref();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer !== undefined) {
        clearInterval(this.timer);
        this.timer = undefined;
        this.batch = [];
      }
    };
  }

  /** What a viewer that attaches now needs: the machines, the live actors and the ring. */
  hello(): Hello {
    this.prune();
    return {
      kind: 'hello',
      machines: [...this.machines.keys()],
      actors: [...this.live.values()].map((l) => ({ ...l.info })),
      records: this.records(),
      showAddresses: this.redaction.showAddresses,
    };
  }

  /** The ring's records, oldest first. */
  records(): InspectRecord[] {
    const out: InspectRecord[] = [];
    const n = this.ring.length;
    for (let i = 0; i < n; i++) {
      const r = this.ring[(this.next + i) % n];
      if (r !== undefined) out.push(r);
    }
    return out;
  }

  machine(id: string): AnyStateMachine | undefined {
    return this.machines.get(id);
  }

  actors(): ActorInfo[] {
    this.prune();
    return [...this.live.values()].map((l) => ({ ...l.info }));
  }

  /** A live actor's context, redacted; undefined when there is no such actor. */
  context(path: string): unknown {
    this.prune();
    for (const l of this.live.values()) {
      if (l.info.actor !== path) continue;
      const snapshot = l.ref.getSnapshot() as { context?: unknown } | undefined;
      return redact(snapshot?.context ?? null, this.redaction) ?? null;
    }
    return undefined;
  }

  private register(ref: ActorRefLike): void {
    this.prune();
    if (!isActorRef(ref)) return;
    // `src` names a provided actor ('connection'); `logic` is the machine itself.
    const machine = isMachine(ref.logic) ? ref.logic : undefined;
    if (machine !== undefined) this.machines.set(machine.id, machine);
    // At registration the actor is being constructed: it has no snapshot yet (its first comes at start).
    const snapshot = ref.getSnapshot() as { value?: StateValue } | undefined;
    const info = {
      actor: pathOf(ref),
      ...(ref._parent !== undefined ? { parent: pathOf(ref._parent) } : {}),
      ...(machine !== undefined ? { machine: machine.id, state: snapshot?.value } : {}),
    };
    this.live.set(ref, { ref, info });
    this.record({ kind: 'actor', ...info, ...(info.state !== undefined ? { to: info.state } : {}) });
  }

  private unregister(ref: ActorRefLike, live: Live): void {
    this.live.delete(ref);
    this.record({ kind: 'stop', actor: live.info.actor });
  }

  /** Actors stopped without a last snapshot (children of a state left) leave the registry here. */
  private prune(): void {
    for (const [ref, live] of this.live) {
      const status = (ref.getSnapshot() as { status?: string } | undefined)?.status;
      if (status !== undefined && status !== 'active') this.unregister(ref, live);
    }
  }

  private record(fields: Omit<InspectRecord, 'seq' | 't'>): void {
    const record: InspectRecord = { seq: ++this.seq, t: Date.now(), ...fields };
    this.ring[this.next] = record;
    this.next = (this.next + 1) % this.ring.length;
    if (this.listeners.size > 0) this.batch.push(record);
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    for (const listener of this.listeners) listener(batch);
  }
}
