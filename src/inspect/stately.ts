// INSPECT=stately: the same redacted records, sent to a Stately inspector
// (@statelyai/inspect's WebSocket inspector) for people who use Stately's
// tools. What leaves is what the built-in page gets: redacted event
// fields, state values, and each machine's configuration without its
// context; never a live snapshot.
import { createWebSocketInspector } from '@statelyai/inspect';
import type { AnyStateMachine } from 'xstate';
import type { Logger } from 'winston';
import type { InspectionBus } from './bus.js';
import type { InspectRecord } from './protocol.js';

/** A machine's configuration for Stately's viewer: no context (it may hold what must not leave), no functions. */
function definition(machine: AnyStateMachine): string {
  const { context: _context, ...config } = machine.config as Record<string, unknown>;
  return JSON.stringify(config, (_key, value: unknown) => (typeof value === 'function' ? undefined : value));
}

export function bridgeToStately(bus: InspectionBus, url: string, log: Logger): () => void {
  const inspector = createWebSocketInspector({ url });
  const snapshot = (value: InspectRecord['to']): { status: 'active'; value: InspectRecord['to']; context: object } => ({ status: 'active', value, context: {} });
  const register = (actor: string, parent: string | undefined, machine: string | undefined, state: InspectRecord['to']): void => {
    const logic = machine === undefined ? undefined : bus.machine(machine);
    inspector.actor(actor, snapshot(state), {
      ...(parent !== undefined ? { parentId: parent } : {}),
      ...(logic !== undefined ? { definition: definition(logic) } : {}),
    });
  };
  for (const a of bus.actors()) register(a.actor, a.parent, a.machine, a.state);
  const unsubscribe = bus.subscribe((records) => {
    for (const r of records) {
      const event = { ...(typeof r.data === 'object' && r.data !== null && !Array.isArray(r.data) ? r.data : {}), type: r.type ?? r.kind };
      if (r.kind === 'actor') register(r.actor, r.parent, r.machine, r.to);
      else if (r.kind === 'event') inspector.event(r.actor, event);
      else if (r.kind === 'step') {
        inspector.event(r.actor, event);
        inspector.snapshot(r.actor, snapshot(r.to), { event });
      }
    }
  });
  log.info('inspection events go to a Stately inspector, redacted', { url });
  return () => {
    unsubscribe();
    inspector.adapter.stop();
  };
}
