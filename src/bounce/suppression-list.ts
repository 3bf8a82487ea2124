// The suppression list as senders meet it: an in-memory set of digests
// mirrored from the store (loaded at start, kept up by the store's change
// notices, from every replica with Redis), so that the check before a send
// is a keyed hash per recipient and a set lookup, and nothing when the list
// is empty. Adding, removing and reading go to the store.
import type { Logger } from 'winston';
import { MailroomError } from '../errors.js';
import { maskAddresses } from '../lib/mask.js';
import type { OutboxStore, SuppressionEntry, SuppressionReason } from '../outbox/store.js';
import { parseAddress } from '../mail/address.js';
import { isSimulated, normalise, type BounceKeys } from './return-path.js';

/** entries one load reads at a time */
const LOAD_PAGE = 1000;

export class SuppressionList {
  private readonly digests = new Set<string>();
  private keys: BounceKeys | undefined;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: OutboxStore,
    private readonly log: Logger,
  ) {
    this.unsubscribe = store.onSuppression(({ digest, added }) => (added ? this.digests.add(digest) : this.digests.delete(digest)));
  }

  get size(): number {
    return this.digests.size;
  }

  /** Loads the list (the store's key is known from here on). */
  async load(keys: BounceKeys): Promise<void> {
    this.keys = keys;
    for (let after = '', page = await this.store.suppressions('', LOAD_PAGE); page.length > 0; page = await this.store.suppressions(after, LOAD_PAGE)) {
      for (const e of page) this.digests.add(e.digest);
      after = (page[page.length - 1] as SuppressionEntry).digest;
      if (page.length < LOAD_PAGE) break;
    }
    if (this.digests.size > 0) this.log.info('suppression list loaded', { addresses: this.digests.size });
  }

  /** Position of the first suppressed address among `addresses` (to, cc, bcc in request order), or -1. */
  firstSuppressed(addresses: readonly string[]): number {
    const keys = this.keys;
    if (this.digests.size === 0 || keys === undefined) return -1;
    for (let i = 0; i < addresses.length; i++) if (this.digests.has(keys.digest(addresses[i] as string))) return i;
    return -1;
  }

  /**
   * An address as a send's envelope would hold it (SendMail's own parser:
   * an internationalised domain in punycode), so that what is added by
   * hand matches what is sent; then its digest.
   */
  private parsed(address: string): { address: string; digest: string } {
    if (this.keys === undefined) throw new MailroomError('ESTORE', 'the suppression list is not loaded yet: the outbox store has not answered since the start');
    const parsed = parseAddress(address.trim());
    if (!parsed.ok) throw new MailroomError('EINVALID', `address: ${parsed.reason}`);
    if (isSimulated(parsed.value)) throw new MailroomError('EINVALID', 'address: simulator addresses are never suppressed');
    return { address: parsed.value, digest: this.keys.digest(parsed.value) };
  }

  add(address: string, reason: SuppressionReason, messageId: string, now: number): Promise<SuppressionEntry> {
    const a = this.parsed(address);
    return this.store.suppress({ digest: a.digest, masked: maskAddresses(normalise(a.address)), reason, since: now, messageId });
  }

  remove(address: string): Promise<SuppressionEntry | undefined> {
    return this.store.unsuppress(this.parsed(address).digest);
  }

  get(address: string): Promise<SuppressionEntry | undefined> {
    return this.store.suppression(this.parsed(address).digest);
  }

  list(after: string, limit: number): Promise<SuppressionEntry[]> {
    return this.store.suppressions(after, limit);
  }

  close(): void {
    this.unsubscribe();
  }
}
