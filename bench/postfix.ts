// The Postfix sink the bench measures against (../shared/tools/postfix-sink.sh):
// its deliveries counted from its own log.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import type { Sink } from './procs.js';

/** where postfix-sink.sh has Postfix log (POSTFIX_LOG to say otherwise) */
const LOG = process.env.POSTFIX_LOG ?? '/var/log/postfix-sink.log';

/** Deliveries to the discard transport in Postfix's log so far, as postfix-sink.sh counts them, reading only what was added since the last look. */
let seen = { offset: 0, sent: 0, tail: '' };
export function postfixCount(): Promise<number> {
  const size = statSync(LOG).size;
  if (size < seen.offset) seen = { offset: 0, sent: 0, tail: '' };
  const fd = openSync(LOG, 'r');
  try {
    const chunk = Buffer.alloc(size - seen.offset);
    readSync(fd, chunk, 0, chunk.length, seen.offset);
    const text = seen.tail + chunk.toString('latin1');
    const end = text.lastIndexOf('\n') + 1;
    seen = { offset: size, sent: seen.sent + (text.slice(0, end).match(/status=sent/g)?.length ?? 0), tail: text.slice(end) };
  } finally {
    closeSync(fd);
  }
  return Promise.resolve(seen.sent);
}

/** The running Postfix as a sink the bench's helpers take. */
export function postfix(port: number): Sink {
  return { kind: 'smtp-sink', port, pid: 0, count: postfixCount, stop: async () => undefined };
}
