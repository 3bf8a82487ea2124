// What BOUNCE_* configure (config.ts reads them; docs/bounces.md).
export interface BounceSettings {
  /** undefined: envelope senders are EMAIL_FROM, and no report can name a message (but a simulated one) */
  readonly domain: string | undefined;
  /** undefined: no bounce listener */
  readonly listener:
    | {
        readonly host: string;
        readonly port: number;
        readonly maxBytes: number;
        readonly maxConnections: number;
        /** reports a second one peer may send */
        readonly perPeerPerSecond: number;
      }
    | undefined;
}
