// What several replicas share through Redis (REDIS_URL): the link, the
// idempotency keys and the OTP codes. Boot imports this module only when
// REDIS_URL is set: the Redis client is some 25 MB of a process that does
// not use it.
import type { Logger } from 'winston';
import type { OtpLimits } from '../otp/store.js';
import type { CodeHasher } from '../otp/code.js';
import { RedisOtpStore } from './otp-store.js';
import { RedisLink, type RedisSettings } from './client.js';
import { RedisIdempotency } from './idempotency.js';
import { RedisRateCap } from './rate-cap.js';
import type { SharedCaps } from '../lib/rate-cap.js';
import type { OutboxStore } from '../outbox/store.js';
import type { RedisOutboxOptions } from './outbox-store.js';

export interface SharedState {
  readonly link: RedisLink;
  readonly idempotency: RedisIdempotency;
  readonly otpStore: RedisOtpStore;
  /** the per-key OTP caps, one allowance for every replica */
  readonly caps: SharedCaps;
  /** OUTBOX_STORE=redis: the outbox on this Redis (BullMQ), loaded only then */
  outbox(options: RedisOutboxOptions): Promise<OutboxStore>;
}

export function openSharedState(
  settings: RedisSettings,
  o: { readonly log: Logger; readonly idempotencyWindowMs: number; readonly idempotencyLimits: { readonly maxBytes: number; readonly maxBytesPerCaller: number }; readonly otp: OtpLimits; readonly hasher: CodeHasher; readonly clock: (() => number) | undefined },
): SharedState {
  const link = new RedisLink(settings, o.log.child({ component: 'redis' }));
  return {
    link,
    idempotency: new RedisIdempotency(link, o.idempotencyWindowMs, o.log.child({ component: 'idempotency' }), o.clock ?? Date.now, o.idempotencyLimits),
    otpStore: new RedisOtpStore(link, o.otp, o.hasher),
    caps: (name, limit, windowMs, what) => new RedisRateCap(link, name, limit, windowMs, what),
    outbox: async (options) => {
      const { RedisOutboxStore } = await import('./outbox-store.js');
      const store = new RedisOutboxStore(link, options, o.log.child({ component: 'outbox' }));
      // Redis may be away now: the store opens down and comes up with it.
      await store.open(Date.now());
      return store;
    },
  };
}
