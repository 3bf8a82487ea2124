// What every send is checked against before anything else is done for it:
// a recipient on the suppression list refuses the message (ESUPPRESSED,
// naming the position: to, then cc, then bcc, from 0), and simulator
// addresses cannot share a message with real ones (the simulator takes a
// message whole, so that a real recipient is never sent a simulated one).
import { MailroomError } from '../errors.js';
import type { Address } from '../mail/address.js';
import { isSimulated } from './return-path.js';
import type { SuppressionList } from './suppression-list.js';

export class RecipientGate {
  constructor(
    private readonly list: SuppressionList,
    private readonly counted: () => void,
  ) {}

  /** Throws what keeps the message from being sent. */
  check(draft: { readonly to: readonly Address[]; readonly cc: readonly Address[]; readonly bcc: readonly Address[] }): void {
    const all = draft.cc.length === 0 && draft.bcc.length === 0 ? draft.to : [...draft.to, ...draft.cc, ...draft.bcc];
    let simulated = 0;
    for (const a of all) if (isSimulated(a.address)) simulated++;
    if (simulated > 0 && simulated < all.length) {
      throw new MailroomError('EINVALID', 'recipients: simulator addresses (@simulator.mailroom.invalid) cannot share a message with real ones');
    }
    // Every send passes here: the addresses are listed only when there is a list to look them up in.
    if (this.list.size > 0) this.refuse(this.list.firstSuppressed(all.map((a) => a.address)), 'recipient');
  }

  /** SendCode's one address. */
  checkOne(address: string): void {
    this.refuse(this.list.firstSuppressed([address]), 'email');
  }

  private refuse(at: number, what: string): void {
    if (at < 0) return;
    this.counted();
    throw new MailroomError('ESUPPRESSED', `${what} ${at} (to, then cc, then bcc, from 0) is on the suppression list after a hard bounce, a complaint or by hand; remove it with RemoveSuppression to mail it again`);
  }
}
