// The outbox's RPCs as a test calls them: SendMail in QUEUED mode,
// GetMessage, CancelMessage, and WatchMessages collected into an array.
import * as grpc from '@grpc/grpc-js';
import type { MailServiceClient } from '../src/generated/mail/MailService.js';
import type { MessageStatus__Output } from '../src/generated/mail/MessageStatus.js';
import type { MessageEvent__Output } from '../src/generated/mail/MessageEvent.js';
import type { SendEmailRequest } from '../src/generated/mail/SendEmailRequest.js';
import type { SendEmailResponse__Output } from '../src/generated/mail/SendEmailResponse.js';

type Client = { readonly mail: MailServiceClient };

function metadataOf(meta: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(meta)) m.set(k, v);
  return m;
}

function settle<T>(resolve: (v: T) => void, reject: (e: grpc.ServiceError) => void): grpc.requestCallback<T> {
  return (err, res) => (err ? reject(err) : resolve(res as T));
}

/** A Timestamp for `ms` (epoch ms). */
export function at(ms: number): { seconds: string; nanos: number } {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

export function msOf(t: { seconds: string; nanos: number } | null): number | undefined {
  return t === null ? undefined : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
}

export function queue(svc: Client, req: SendEmailRequest, meta: Record<string, string> = {}): Promise<SendEmailResponse__Output> {
  return new Promise((resolve, reject) => svc.mail.SendMail({ delivery: 'DELIVERY_QUEUED', ...req }, metadataOf(meta), { deadline: Date.now() + 10_000 }, settle(resolve, reject)));
}

export function getMessage(svc: Client, id: string, meta: Record<string, string> = {}): Promise<MessageStatus__Output> {
  return new Promise((resolve, reject) => svc.mail.GetMessage({ message_id: id }, metadataOf(meta), { deadline: Date.now() + 5000 }, settle(resolve, reject)));
}

export function cancelMessage(svc: Client, id: string, meta: Record<string, string> = {}): Promise<MessageStatus__Output> {
  return new Promise((resolve, reject) => svc.mail.CancelMessage({ message_id: id }, metadataOf(meta), { deadline: Date.now() + 5000 }, settle(resolve, reject)));
}

/** Polls GetMessage until the message is in `state` (a MessageState name). */
export async function until(svc: Client, id: string, state: string, timeoutMs = 10_000, meta: Record<string, string> = {}): Promise<MessageStatus__Output> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const status = await getMessage(svc, id, meta);
    if (status.state === state) return status;
    if (Date.now() > end) throw new Error(`${id} is ${status.state}, not ${state}, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Watcher {
  readonly events: MessageEvent__Output[];
  /** resolves once the service says the watch is live (its response headers): nothing queued after is missed */
  readonly live: Promise<void>;
  /** resolves once `test` holds for the events so far */
  until(test: (events: readonly MessageEvent__Output[]) => boolean, timeoutMs?: number): Promise<void>;
  /** ends the stream as a client that goes away */
  close(): void;
  /** how the stream ended, once it did */
  readonly ended: Promise<grpc.ServiceError | undefined>;
}

export function watch(svc: Client, after = '', meta: Record<string, string> = {}): Watcher {
  const events: MessageEvent__Output[] = [];
  const stream = svc.mail.WatchMessages({ after }, metadataOf(meta));
  const live = new Promise<void>((resolve) => stream.once('metadata', () => resolve()));
  const waiters: { test: (e: readonly MessageEvent__Output[]) => boolean; resolve: () => void }[] = [];
  stream.on('data', (e: MessageEvent__Output) => {
    events.push(e);
    for (const w of waiters.splice(0)) {
      if (w.test(events)) w.resolve();
      else waiters.push(w);
    }
  });
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    stream.on('error', (err: grpc.ServiceError) => resolve(err));
    stream.on('end', () => resolve(undefined));
  });
  return {
    events,
    live,
    ended,
    until(test, timeoutMs = 10_000) {
      if (test(events)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`watch: ${events.length} events, the condition not met within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    close: () => stream.cancel(),
  };
}
