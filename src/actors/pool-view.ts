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

/** The leaf states of a machine, by key, as its definition names them. */
function leafStates(machine: AnyStateMachine): string[] {
  const leaves: string[] = [];
  const walk = (node: StateNodeLike): void => {
    const children = Object.values(node.states);
    if (children.length === 0) leaves.push(node.key);
    for (const child of children) walk(child);
  };
  walk(machine.root as StateNodeLike);
  return leaves;
}

const CONNECTION_STATES = leafStates(smtpConnectionMachine);

/** The leaf of a snapshot's value: 'connecting', or 'idle' for { session: 'idle' }. */
function leafOf(value: unknown): string {
  let v = value;
  while (typeof v === 'object' && v !== null) v = Object.values(v)[0];
  return String(v);
}

export interface PoolView {
  connectionStates(): Map<string, number>;
  /** jobs not yet with a connection: queued, or waiting out a retry backoff */
  queueDepth(): number;
  /**
   * Every connection drops its socket at once. For a supervisor in error:
   * xstate leaves the children of an actor in error running, with their
   * sockets and timers.
   */
  forceClose(): void;
}

export function poolView(supervisor: SupervisorActor): PoolView {
  return {
    connectionStates: () => connectionStates(supervisor),
    queueDepth: () => queueDepth(supervisor),
    forceClose: () => {
      for (const connection of supervisor.getSnapshot().context.pool.refs()) connection.send({ type: 'FORCE_CLOSE' });
    },
  };
}

function connectionStates(supervisor: SupervisorActor): Map<string, number> {
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
