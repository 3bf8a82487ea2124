// The suppression list in Redis (OUTBOX_STORE=redis), shared by replicas:
// a hash of entries by digest (the address never in clear), a sorted set of
// the digests for paging in order, and a channel on which every change is
// told, so that each replica's in-memory mirror follows at once.
import type { Redis } from 'ioredis';
import { Listeners } from '../lib/listeners.js';
import type { SuppressionEntry } from '../outbox/store.js';
import { Script, type RedisLink } from './client.js';

/** add(digest, entry) → the entry stored (the one there before, if any) */
const ADD = new Script(`
local before = redis.call('HGET', KEYS[1], ARGV[1])
if before then return before end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return ARGV[2]
`);

/** remove(digest) → the entry it was, or nil */
const REMOVE = new Script(`
local before = redis.call('HGET', KEYS[1], ARGV[1])
if before then redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('ZREM', KEYS[2], ARGV[1]) end
return before
`);

export interface SuppressionChange {
  readonly digest: string;
  readonly added: boolean;
}

export class RedisSuppressions {
  private readonly changes = new Listeners<SuppressionChange>();
  private subscriber: Redis | undefined;

  constructor(private readonly link: RedisLink) {}

  private keys(): string[] {
    return [this.link.key('suppress', 'entries'), this.link.key('suppress', 'order')];
  }

  private channel(): string {
    return this.link.key('suppress', 'notify');
  }

  async listen(): Promise<void> {
    const subscriber = this.link.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null });
    subscriber.on('error', () => undefined);
    subscriber.on('message', (_channel: string, message: string) => this.changes.tell(JSON.parse(message) as SuppressionChange));
    this.subscriber = subscriber;
    await subscriber.subscribe(this.channel());
  }

  onChange(listener: (change: SuppressionChange) => void): () => void {
    return this.changes.add(listener);
  }

  private async tell(change: SuppressionChange): Promise<void> {
    await this.link.run('suppress notify', (c) => c.publish(this.channel(), JSON.stringify(change)));
  }

  async add(entry: SuppressionEntry): Promise<SuppressionEntry> {
    const stored = String(await this.link.eval('suppress add', ADD, this.keys(), [entry.digest, JSON.stringify(entry)]));
    await this.tell({ digest: entry.digest, added: true });
    return JSON.parse(stored) as SuppressionEntry;
  }

  async remove(digest: string): Promise<SuppressionEntry | undefined> {
    const before = await this.link.eval('suppress remove', REMOVE, this.keys(), [digest]);
    await this.tell({ digest, added: false });
    return typeof before === 'string' ? (JSON.parse(before) as SuppressionEntry) : undefined;
  }

  async get(digest: string): Promise<SuppressionEntry | undefined> {
    const raw = await this.link.run('suppress get', (c) => c.hget(this.keys()[0] as string, digest));
    return raw === null ? undefined : (JSON.parse(raw) as SuppressionEntry);
  }

  async page(after: string, limit: number): Promise<SuppressionEntry[]> {
    const [entries, order] = this.keys() as [string, string];
    const digests = await this.link.run('suppress list', (c) => c.zrangebylex(order, after === '' ? '-' : `(${after}`, '+', 'LIMIT', 0, limit));
    if (digests.length === 0) return [];
    const raws = await this.link.run('suppress list', (c) => c.hmget(entries, ...digests));
    return raws.flatMap((raw) => (raw === null ? [] : [JSON.parse(raw) as SuppressionEntry]));
  }

  async close(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}
