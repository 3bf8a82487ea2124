// QUEUE_MAX_BYTES: what every mail under way may hold in memory together,
// until its caller is answered: its composed text, and the request it came
// from (which the gRPC call keeps until then). The request's share is held
// from the moment its bytes are in, before it is decoded (see
// rpc/admission.ts: a request whose share and least message do not fit is
// never decoded); the message's is reserved before it is composed, so a
// refusal costs next to nothing, and given back when the mail is settled,
// whatever the outcome. A call also holds a share while its request is still
// arriving (see early()). What one caller (its owner: the caller's name, or
// the address it calls from) holds is bounded too, by
// QUEUE_MAX_BYTES_PER_CALLER: one caller cannot take the whole budget from
// the rest.
import { MailroomError } from '../errors.js';

export class MemoryBudget {
  private held = 0;
  /** what each owner holds (none: nothing) */
  private readonly owners = new Map<string, number>();
  /** what the last request admitted or refused needed (see early) */
  private expected = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly maxBytesPerOwner = maxBytes,
  ) {}

  get bytes(): number {
    return this.held;
  }

  /** Takes `bytes` for `owner`, or throws EQUEUEFULL (RESOURCE_EXHAUSTED with retry-after) when they do not fit. */
  reserve(bytes: number, owner = ''): void {
    const refused = this.refusal(bytes, owner);
    if (refused !== undefined) throw refused;
    this.take(bytes, owner);
  }

  /** The refusal a reservation of `bytes` by `owner` would meet now, if any (nothing is taken). */
  refusal(bytes: number, owner = ''): MailroomError | undefined {
    if (this.held + bytes > this.maxBytes) {
      return new MailroomError('EQUEUEFULL', `the send queue is full (${Math.ceil(this.held / 1_048_576)} MiB of QUEUE_MAX_BYTES=${this.maxBytes} bytes held)`, {
        retryAfterSeconds: 1,
      });
    }
    const mine = this.owners.get(owner) ?? 0;
    if (mine + bytes <= this.maxBytesPerOwner) return undefined;
    return new MailroomError('EQUEUEFULL', `this caller's share of the send queue is full (${Math.ceil(mine / 1_048_576)} MiB of QUEUE_MAX_BYTES_PER_CALLER=${this.maxBytesPerOwner} bytes held)`, {
      retryAfterSeconds: 1,
    });
  }

  release(bytes: number, owner = ''): void {
    this.take(-bytes, owner);
  }

  private take(bytes: number, owner: string): void {
    this.held += bytes;
    const mine = (this.owners.get(owner) ?? 0) + bytes;
    if (mine <= 0) this.owners.delete(owner);
    else this.owners.set(owner, mine);
  }

  /**
   * What a new call holds at its headers, while its request arrives: as
   * much as the last request admitted or refused needed (nothing before the
   * first). A flood of large requests then costs the requests the budget
   * cannot take their headers only, not bodies received, copied and thrown
   * away (docs/decisions.md), and small requests hold next to nothing.
   */
  early(owner = ''): Ticket | MailroomError | undefined {
    return this.expected === 0 ? undefined : this.hold(this.expected, owner);
  }

  /**
   * A request of `bytes` has arrived: the ticket on them, or the refusal,
   * also when `thenNeeds` more (its message) would not fit beside them.
   */
  admit(bytes: number, thenNeeds: number, owner = ''): Ticket | MailroomError {
    this.expected = bytes + thenNeeds;
    const refused = this.refusal(bytes + thenNeeds, owner);
    return refused ?? this.hold(bytes, owner);
  }

  /** Takes `bytes` for `owner` until the returned ticket is given back (once; later calls do nothing), or returns the refusal. */
  hold(bytes: number, owner = ''): Ticket | MailroomError {
    const refused = this.refusal(bytes, owner);
    if (refused !== undefined) return refused;
    this.take(bytes, owner);
    let out = true;
    return {
      release: () => {
        if (!out) return;
        out = false;
        this.take(-bytes, owner);
      },
    };
  }
}

export interface Ticket {
  release(): void;
}

/**
 * What a message will hold before it is composed, from above: its content
 * base64-encoded (4/3 of its UTF-8 bytes, plus a line end every 76), its
 * headers (addresses and subject: a UTF-16 unit is at most 3 bytes of UTF-8,
 * 4 in an encoded word's base64, with the words' own markers and folding 5),
 * and 2 KB for the rest of the header block.
 */
export function messageBytes(contentBytes: number, headerChars: number): number {
  return Math.ceil(((contentBytes * 4) / 3) * (78 / 76)) + 5 * headerChars + 2048;
}
