// The OtpStore on Redis, for several replicas serving the same users: each
// step is one atomic script (src/redis/otp-scripts.ts), every key has a
// time to live, and hashes are stored as hex HMACs, never a code. Redis
// expires what ends, so sweep() removes nothing; nothing counts the codes
// (size is NaN). Every step answers by promise and fails with ESTORE when
// Redis cannot be reached. Key names carry an HMAC of the address, never the
// address.
import { CodeHasher, type CodeHash } from '../otp/code.js';
import { CODE_ACCEPTED, type OtpLimits, type OtpStore, type Reservation, type StoredCode, type SweepResult } from '../otp/store.js';
import { CLAIM_TTL_MS, Script, type RedisLink } from './client.js';
import { CHECK, COMMIT, RELEASE, RESERVE } from './otp-scripts.js';

const SCRIPTS = { reserve: new Script(RESERVE), commit: new Script(COMMIT), release: new Script(RELEASE), check: new Script(CHECK) };


const hex = (hash: CodeHash): string => Buffer.from(hash, 'latin1').toString('hex');

function reservation(reply: unknown[]): Reservation {
  if (reply[0] === 1 || reply[0] === '1') return { ok: true };
  const reason = String(reply[1]);
  return {
    ok: false,
    reason: reason === 'pending' || reason === 'cooldown' ? reason : 'hourly',
    retryAfterMs: Number(reply[2]),
  };
}

export class RedisOtpStore implements OtpStore {
  private readonly dummy = hex(CodeHasher.dummy());
  private readonly ttl = String(CLAIM_TTL_MS);

  constructor(
    private readonly redis: RedisLink,
    private readonly limits: OtpLimits,
    /** names each address's key by an HMAC under OTP_SECRET: key names never carry an address */
    private readonly hasher: CodeHasher,
  ) {}

  get size(): number {
    return NaN;
  }

  private key(address: string): string {
    return this.redis.key('otp', this.hasher.nameOf(address));
  }

  reserve(key: string, now: number): Promise<Reservation> {
    const { resendCooldownMs, maxSendsPerHour, lifespanMs } = this.limits;
    return this.redis.eval('reserve', SCRIPTS.reserve, [this.key(key)], [now, resendCooldownMs, maxSendsPerHour, lifespanMs, this.ttl]).then((r) => reservation(r as unknown[]));
  }

  async commit(key: string, hash: CodeHash, now: number): Promise<void> {
    const { lifespanMs, maxAttempts } = this.limits;
    await this.redis.eval('commit', SCRIPTS.commit, [this.key(key)], [hex(hash), now, lifespanMs, maxAttempts, this.ttl]);
    // A code that is live survives a failover: it is on a replica before its SendCode answers.
    await this.redis.replicated('the code');
  }

  async release(key: string, refund: boolean, now: number): Promise<void> {
    await this.redis.eval('release', SCRIPTS.release, [this.key(key)], [refund ? '1' : '0', now, this.ttl]);
  }

  async check(key: string, candidate: CodeHash, now: number): Promise<number> {
    const result = Number(await this.redis.eval('check', SCRIPTS.check, [this.key(key)], [hex(candidate), this.dummy, now, this.ttl]));
    return result === -1 ? CODE_ACCEPTED : result;
  }

  sweep(): SweepResult {
    return { removed: 0, examined: 0 };
  }

  async peek(key: string): Promise<Readonly<StoredCode> | undefined> {
    const [h, exp, left] = await this.redis.run('peek', (c) => c.hmget(this.key(key), 'h', 'exp', 'left'));
    if (h === null || h === undefined) return undefined;
    return { hash: Buffer.from(String(h), 'hex').toString('latin1'), expiresAt: Number(exp), attemptsLeft: Number(left) };
  }
}
