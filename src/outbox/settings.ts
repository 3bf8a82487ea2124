// The outbox's rules (config.outbox), as the store and the supervisor take them.
export interface OutboxSettings {
  /** a transient failure defers a message by this, doubling per attempt, with jitter */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** after this long from acceptance, a message not sent fails EEXPIRED */
  readonly maxAgeMs: number;
  /** a final message's status (and its events) are kept this long */
  readonly retentionMs: number;
  /** send_at at most this far ahead */
  readonly maxDelayMs: number;
  /** bytes of stored message text */
  readonly maxBytes: number;
  /** and one caller's (its owner's: see lane.ts) */
  readonly maxBytesPerCaller: number;
  /** LANE_BULK_MIN_SHARE: the least share of claims bulk gets while it has messages due */
  readonly bulkShare: number;
  /** a store that failed is probed again after a backoff from 100 ms up to this */
  readonly storeBackoffMaxMs: number;
}
