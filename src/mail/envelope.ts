/** The SMTP envelope of one message: who it is from and every recipient (Bcc included), once each. */
export interface Envelope {
  readonly from: string;
  readonly to: readonly string[];
}
