// What the inspector sends its page (and writes to /events.jsonl): types
// only, shared by the server (src/inspect) and the page (page/inspector.ts,
// which imports them from here).
// Every field has passed redact() or is a name from a machine definition.

export type StateValue = string | { readonly [region: string]: StateValue };

/** A value that passed the allow-list (see redact.ts). */
export type Redacted = string | number | boolean | null | Redacted[] | { [key: string]: Redacted };

export interface InspectRecord {
  /** position in the stream; the ring keeps the last INSPECT_BUFFER */
  readonly seq: number;
  /** epoch ms */
  readonly t: number;
  /**
   * actor: it started; step: a machine took an event (from → to); event: a
   * non-machine actor got one; stop: it ended; message: a queued message
   * changed state (`message` is its id, `to` its state, on the chart of
   * `machine` "message")
   */
  readonly kind: 'actor' | 'step' | 'event' | 'stop' | 'message';
  /** the actor's path from its root: "supervisor/c1", "otp" */
  readonly actor: string;
  readonly parent?: string;
  /** the machine's id, for machine actors: names its chart */
  readonly machine?: string;
  /** the event's type */
  readonly type?: string;
  readonly from?: StateValue;
  readonly to?: StateValue;
  /** the event's other fields, redacted */
  readonly data?: Redacted;
  /** message records: the Message-ID (an id made by mailroom: a random part and the sender's domain) */
  readonly message?: string;
}

export interface ActorInfo {
  readonly actor: string;
  readonly parent?: string;
  readonly machine?: string;
  readonly state?: StateValue;
}

/** The first message on a stream: the live actors, and what the ring holds. */
export interface Hello {
  readonly kind: 'hello';
  readonly machines: readonly string[];
  readonly actors: readonly ActorInfo[];
  readonly records: readonly InspectRecord[];
  readonly showAddresses: boolean;
}
