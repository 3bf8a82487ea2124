// A queued message's life, as a statechart. Records are rows, not actors:
// the next state of a record comes from xstate's pure transition function
// applied to its stored state and an event, so a hundred thousand queued
// messages cost rows, and the chart is still what the code does (npm run
// charts draws it; the inspector shows it).
//
//   queued ──CLAIM──► sending ──DELIVERED──► sent
//     ▲  │ │            │ │ └──FAIL──► failed ◄──EXPIRE── queued, deferred
//     │  │ │            │ └──DEFER──► deferred ──CLAIM──► sending
//     │  │ └──DEFER (the relay is away: no attempt) ──► deferred
//     │  └─CANCEL─┐     └──RELEASE (given back unsent) ──► queued
//     │           ▼
//     └──── cancelled ◄──CANCEL── deferred
//
//   sent ──BOUNCE──► bounced ──COMPLAIN──► complained ◄──COMPLAIN── sent
//
// SENT is where delivery ends (its text is gone), not where the story
// does: a delivery report that comes back later (bounce/) moves it on. A
// soft bounce, or a second report, is recorded without a move.
//
// The machine has no guards and no context: which event a record gets
// (defer or fail) is the supervisor's decision, when it is due again the
// store's (outbox/policy.ts); whether the event applies is the chart's. Its
// answers are kept per state and event, so a step costs a lookup once each
// pair has been asked.
import { setup, transition, type SnapshotFrom } from 'xstate';

export type MessageEventType = 'CLAIM' | 'DELIVERED' | 'DEFER' | 'FAIL' | 'RELEASE' | 'CANCEL' | 'EXPIRE' | 'BOUNCE' | 'COMPLAIN';

export const messageMachine = setup({
  types: {
    events: {} as { type: MessageEventType },
  },
}).createMachine({
  id: 'message',
  initial: 'queued',
  states: {
    // stored, waiting for its time (send_at) or a connection
    queued: { on: { CLAIM: 'sending', CANCEL: 'cancelled', EXPIRE: 'failed', DEFER: 'deferred' } },
    // held by a connection: its outcome decides
    sending: { on: { DELIVERED: 'sent', DEFER: 'deferred', FAIL: 'failed', RELEASE: 'queued' } },
    // a transient failure, or the relay away; it is claimed again when its next attempt is due
    deferred: { on: { CLAIM: 'sending', CANCEL: 'cancelled', EXPIRE: 'failed' } },
    // the relay took it; a delivery report may still come back
    sent: { on: { BOUNCE: 'bounced', COMPLAIN: 'complained' } },
    // a recipient's server refused it for good after the relay's 250
    bounced: { on: { COMPLAIN: 'complained' } },
    // a recipient reported it as spam
    complained: { type: 'final' },
    failed: { type: 'final' },
    cancelled: { type: 'final' },
  },
});

export type MessageState = 'queued' | 'sending' | 'sent' | 'deferred' | 'failed' | 'cancelled' | 'bounced' | 'complained';

export const MESSAGE_STATES: readonly MessageState[] = ['queued', 'sending', 'sent', 'deferred', 'failed', 'cancelled', 'bounced', 'complained'];

/** The states delivery ends in: a message's text is deleted on entering one, and retention forgets it after. */
export const ENDED: readonly MessageState[] = ['sent', 'failed', 'cancelled', 'bounced', 'complained'];

const ended: ReadonlySet<MessageState> = new Set(ENDED);

export function isFinal(state: MessageState): boolean {
  return ended.has(state);
}

/** States a delivery report may name: the relay took the message. */
export function wasSent(state: MessageState): boolean {
  return state === 'sent' || state === 'bounced' || state === 'complained';
}

const answers = new Map<string, MessageState | null>();

/**
 * The state `event` takes a record in `state` to, by the chart; undefined
 * when the chart does not take that event there (a cancel of a message
 * already sending, a claim of a sent one).
 */
export function advance(state: MessageState, event: MessageEventType): MessageState | undefined {
  const key = `${state}:${event}`;
  let next = answers.get(key);
  if (next === undefined) {
    const snapshot = messageMachine.resolveState({ value: state, context: {} }) as SnapshotFrom<typeof messageMachine>;
    const [after] = transition(messageMachine, snapshot, { type: event });
    next = after.value === state && !snapshot.can({ type: event }) ? null : (after.value as MessageState);
    answers.set(key, next);
  }
  return next ?? undefined;
}
