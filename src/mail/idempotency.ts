// Remembers the outcome of SendMail calls that carried an idempotency key.
// A repeat inside the window gets the first result (or waits for it while it
// is in flight); a failed send is forgotten so that a retry really retries.
// Entries are kept in insertion order, which is expiry order, so pruning
// touches only what expires.
import { MailroomError } from '../errors.js';
import type { Delivered } from './job.js';

interface Entry {
  readonly fingerprint: string;
  readonly expiresAt: number;
  readonly result: Promise<Delivered>;
}

export class IdempotencyCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Returns the remembered result for key, or runs `send` and remembers it. */
  run(key: string, fingerprint: string, send: () => Promise<Delivered>): { result: Promise<Delivered>; first: boolean } {
    this.prune();
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      if (existing.fingerprint !== fingerprint) {
        throw new MailroomError('EIDEMPOTENCY', 'idempotency_key was already used for a different message');
      }
      return { result: existing.result, first: false };
    }
    const result = send();
    const entry: Entry = { fingerprint, expiresAt: this.now() + this.windowMs, result };
    this.entries.set(key, entry);
    result.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
    return { result, first: true };
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now) break;
      this.entries.delete(key);
    }
  }
}
