// The one function every inspected value passes before it leaves the
// process (the inspector page, its export, the Stately bridge): an
// allow-list. A key not named here is dropped, whatever it holds, so a new
// field is secret until someone decides otherwise. What can never pass:
// passwords, OTP codes and their hashes, secrets, message bodies, html,
// raw messages, replies (resolvers), templates. Addresses are masked
// (a***@example.com, from their structure, not a pattern of likely
// characters) unless INSPECT_SHOW_ADDRESSES=true; long strings are cut;
// depth and array length are bounded.
import type { Redacted } from './protocol.js';
import { maskAddresses } from '../lib/mask.js';

/** Keys whose values may leave, recursively filtered themselves. */
const ALLOWED = new Set([
  // events and reports
  'type', 'cid', 'id', 'jobId', 'capacity', 'attempts', 'attempt', 'staleRequeues', 'sent', 'cap', 'inFlight', 'retryMs', 'retryAt',
  'job', 'jobs', 'returned', 'error', 'code', 'enhanced', 'smtp', 'reply', 'message', 'messageId', 'envelope',
  'from', 'to', 'address', 'refused', 'up', 'workers', 'timeoutMs', 'reason', 'retryAfterMs', 'retryAfterSeconds',
  'reservation', 'ok', 'result', 'removed', 'examined', 'key', 'checks', 'deadline', 'phase', 'place', 'holder', 'lastCid',
  'bounces', 'recipient', 'kind', 'status', 'diagnostic', 'at',
  // actor contexts
  'pending', 'seq', 'pipelining', 'chunking', 'proven', 'lastError', 'shutdownRequested', 'shutdownTimeoutMs', 'lastDown',
  'offered', 'seenClaim', 'storeFailures', 'room', 'seen', 'pace', 'perSecond', 'throttled', 'lane', 'owner', 'options', 'connection', 'session', 'ledger', 'pool', 'upCount', 'members', 'idle',
  // options worth seeing (never credentials)
  'queueLimit', 'maxAttempts', 'rateLimitPerSecond', 'queueTimeoutMs', 'retryBaseMs', 'retryMaxMs', 'closeTimeoutMs',
  'keepaliveMs', 'maxMessagesPerConnection', 'pipelineDepth', 'pipelineDepthMax', 'backoffBaseMs', 'backoffMaxMs', 'host', 'port', 'tls', 'heloName',
  'connectTimeoutMs', 'greetingTimeoutMs', 'commandTimeoutMs', 'dataTimeoutMs', 'length', 'lifespanMs',
  'resendCooldownMs', 'cleanupMs', 'returnCode', 'nextAttemptAt',
]);

const MAX_STRING = 200;
const MAX_ITEMS = 20;
const MAX_DEPTH = 5;

export interface RedactOptions {
  /** INSPECT_SHOW_ADDRESSES: addresses as they are */
  readonly showAddresses: boolean;
  /** levels kept; deeper values read '…' (default 5) */
  readonly depth?: number;
}


function text(s: string, o: RedactOptions): string {
  const masked = o.showAddresses || !s.includes('@') ? s : maskAddresses(s);
  return masked.length > MAX_STRING ? `${masked.slice(0, MAX_STRING)}…(${masked.length - MAX_STRING} more)` : masked;
}

/** What may leave of `value`: allowed keys only, addresses masked, strings cut. */
export function redact(value: unknown, o: RedactOptions, depth = 0): Redacted | undefined {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'string') return text(value, o);
  if (typeof value !== 'object') return undefined; // functions, symbols, bigints
  if (depth >= (o.depth ?? MAX_DEPTH)) return '…';
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  if (value instanceof Map || value instanceof Set) return { size: value.size };
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ITEMS).map((v) => redact(v, o, depth + 1) ?? null);
    if (value.length > MAX_ITEMS) items.push(`…(${value.length - MAX_ITEMS} more)`);
    return items;
  }
  const out: { [key: string]: Redacted } = {};
  // An Error's message is its own property but not enumerable.
  const keys = value instanceof Error ? ['message', ...Object.keys(value)] : Object.keys(value);
  for (const key of keys) {
    if (!ALLOWED.has(key)) continue;
    const v = redact((value as Record<string, unknown>)[key], o, depth + 1);
    if (v !== undefined) out[key] = v;
  }
  return out;
}
