// What the gauges read at a scrape, from the actors' snapshots: the state of
// every connection (its machine's leaf states, all of them, so that a state
// no connection is in reads 0) and the depth of the supervisor's queue.
import type { AnyStateMachine } from 'xstate';
import { smtpConnectionMachine } from '../actors/smtp-connection.js';
import type { SupervisorActor } from '../actors/supervisor.js';

interface StateNodeLike {
  readonly key: string;
  readonly states: Readonly<Record<string, StateNodeLike>>;
}

/** The leaf states of a machine, by key, as its definition names them. */
export function leafStates(machine: AnyStateMachine): string[] {
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
export function leafOf(value: unknown): string {
  let v = value;
  while (typeof v === 'object' && v !== null) v = Object.values(v)[0];
  return String(v);
}

export function connectionStates(supervisor: SupervisorActor): Map<string, number> {
  const counts = new Map<string, number>(CONNECTION_STATES.map((s) => [s, 0]));
  for (const child of Object.values(supervisor.getSnapshot().children)) {
    const snapshot: unknown = child?.getSnapshot();
    if (typeof snapshot !== 'object' || snapshot === null || !('machine' in snapshot) || snapshot.machine !== smtpConnectionMachine || !('value' in snapshot)) continue;
    const leaf = leafOf(snapshot.value);
    counts.set(leaf, (counts.get(leaf) ?? 0) + 1);
  }
  return counts;
}

export function queueDepth(supervisor: SupervisorActor): number {
  const { ledger } = supervisor.getSnapshot().context;
  return ledger.queued + ledger.waitingRetry;
}
