/** The SMTP envelope of one message: who it is from and every recipient (Bcc included), once each. */
export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
}

/** What gives each message its own envelope sender (bounce/return-path.ts, while BOUNCE_DOMAIN is set). */
export interface ReturnPathMinter {
  /** undefined: envelope senders are not changed */
  readonly domain: string | undefined;
  /** the envelope sender for a message, or `from` when none can be minted yet */
  sender(messageId: string, from: string): string;
}
