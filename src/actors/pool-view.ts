// What the rest of the service may ask of the pool, without knowing the
// shape of its snapshots: the state of every connection (its machine's leaf
// states, all of them, so that a state no connection is in reads 0), the
// depth of the queue, and, when the supervisor itself has failed, closing
// the connections it leaves behind.
import type { AnyStateMachine } from 'xstate';
import { smtpConnectionMachine } from './smtp-connection.js';
import type { SupervisorActor } from './supervisor.js';

interface StateNodeLike {
  readonly key: string;
  readonly states: Readonly<Record<string, StateNodeLike>>;
}

/**
 * What a connection is doing, as the metrics name it: its state, and while
 * authenticated the state of its work (not whether a successor is being
 * dialled); waiting to redial is `reconnecting`, whatever the last dial
 * found.
 */
const COLLAPSED = new Set(['reconnecting']);
const SIDE_REGIONS = new Set(['successor']);

/** The states a connection can be in, by those names, as its definition has them. */
function connectionStates(machine: AnyStateMachine): string[] {
  const names: string[] = [];
  const walk = (node: StateNodeLike): void => {
    const children = Object.values(node.states).filter((c) => !SIDE_REGIONS.has(c.key));
    if (children.length === 0 || COLLAPSED.has(node.key)) names.push(node.key);
    else for (const child of children) walk(child);
  };
  walk(machine.root as StateNodeLike);
  return names;
}

const CONNECTION_STATES = connectionStates(smtpConnectionMachine);

/** A snapshot's value by the same names: 'connecting', 'idle' for { authenticated: { work: 'idle', … } }, 'reconnecting' for { reconnecting: 'lost' }. */
function leafOf(value: unknown): string {
  let v = value;
  while (typeof v === 'object' && v !== null) {
    const [key, inner] = Object.entries(v).find(([k]) => !SIDE_REGIONS.has(k)) ?? [];
    if (key === undefined || COLLAPSED.has(key)) return String(key);
    v = inner;
  }
  return String(v);
}

export interface PoolView {
  connectionStates(): Map<string, number>;
  /** jobs not yet with a connection: queued, or waiting out a retry backoff */
  queueDepth(): number;
  relayPace(): { readonly perSecond: number | undefined; readonly slowed: boolean };
  /**
   * Every connection drops its socket at once. For a supervisor in error:
   * xstate leaves the children of an actor in error running, with their
   * sockets and timers.
   */
  forceClose(): void;
}

export function poolView(supervisor: SupervisorActor): PoolView {
  return {
    connectionStates: () => countStates(supervisor),
    queueDepth: () => queueDepth(supervisor),
    relayPace: () => {
      const { pace } = supervisor.getSnapshot().context;
      return { perSecond: pace.perSecond, slowed: pace.throttled };
    },
    forceClose: () => {
      for (const connection of supervisor.getSnapshot().context.pool.refs()) connection.send({ type: 'FORCE_CLOSE' });
    },
  };
}

function countStates(supervisor: SupervisorActor): Map<string, number> {
  const counts = new Map<string, number>(CONNECTION_STATES.map((s) => [s, 0]));
  for (const child of Object.values(supervisor.getSnapshot().children)) {
    const snapshot: unknown = child?.getSnapshot();
    if (typeof snapshot !== 'object' || snapshot === null || !('machine' in snapshot) || snapshot.machine !== smtpConnectionMachine || !('value' in snapshot)) continue;
    const leaf = leafOf(snapshot.value);
    counts.set(leaf, (counts.get(leaf) ?? 0) + 1);
  }
  return counts;
}

function queueDepth(supervisor: SupervisorActor): number {
  const { ledger } = supervisor.getSnapshot().context;
  return ledger.queued + ledger.waitingRetry;
}
