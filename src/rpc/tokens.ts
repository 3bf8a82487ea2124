// AUTH_TOKENS_FILE: who may call, with what token, and which services.
// Each non-empty line not starting with '#' is `name token` or
// `name token service[,service]`; a line without services allows both.
// `admin` among the services marks a caller that may manage the
// suppression list (mail.SuppressionService); no line allows it unsaid.
// Tokens are compared in constant time: the presented one is hashed and
// compared with every known hash, the whole list every time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { MailroomError } from '../errors.js';

/** The services a token can be given; health is open to all, reflection to any valid token. */
export const CALLABLE_SERVICES = ['mail.MailService', 'mail.OtpService'] as const;
export type CallableService = (typeof CALLABLE_SERVICES)[number];
/** what `admin` in a line's services grants */
export const ADMIN_SERVICE = 'mail.SuppressionService';

export const MIN_TOKEN_CHARS = 32;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface Caller {
  readonly name: string;
  readonly services: ReadonlySet<string>;
}

interface Entry extends Caller {
  readonly digest: Buffer;
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export class TokenTable {
  private constructor(private readonly entries: readonly Entry[]) {}

  get size(): number {
    return this.entries.length;
  }

  get names(): string[] {
    return this.entries.map((e) => e.name);
  }

  /** The table a file's text describes, or ECONFIG naming every bad line (never a token). */
  static parse(text: string, source: string): TokenTable {
    const problems: string[] = [];
    const entries: Entry[] = [];
    const seenNames = new Set<string>();
    const seenTokens = new Set<string>();
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const where = `${source} line ${i + 1}`;
      const [name = '', token = '', services, ...rest] = line.split(/\s+/);
      if (rest.length > 0 || token === '') {
        problems.push(`${where}: expected "name token" or "name token service[,service]"`);
        return;
      }
      if (!NAME.test(name)) problems.push(`${where}: the name ${JSON.stringify(name.slice(0, 64))} is not 1-64 letters, digits, ., _, @ or -`);
      if (token.length < MIN_TOKEN_CHARS) problems.push(`${where}: the token of ${name} has ${token.length} characters; at least ${MIN_TOKEN_CHARS}`);
      const listed = services === undefined ? [...CALLABLE_SERVICES] : services.split(',');
      for (const s of listed) {
        if (!(CALLABLE_SERVICES as readonly string[]).includes(s) && s !== 'admin') problems.push(`${where}: unknown service ${JSON.stringify(s.slice(0, 64))} (expected ${CALLABLE_SERVICES.join(', ')} or admin)`);
      }
      const allowed = listed.map((s) => (s === 'admin' ? ADMIN_SERVICE : s));
      if (seenNames.has(name)) problems.push(`${where}: ${name} is named twice`);
      const key = digest(token).toString('hex');
      if (seenTokens.has(key)) problems.push(`${where}: the token of ${name} is given twice`);
      seenNames.add(name);
      seenTokens.add(key);
      entries.push({ name, services: new Set(allowed), digest: digest(token) });
    });
    if (entries.length === 0 && problems.length === 0) problems.push(`${source}: no tokens (every line is empty or a comment)`);
    if (problems.length > 0) throw new MailroomError('ECONFIG', `invalid configuration:\n  AUTH_TOKENS_FILE: ${problems.join('\n  AUTH_TOKENS_FILE: ')}`);
    return new TokenTable(entries);
  }

  /** The caller a token belongs to, if any; every entry is compared, in constant time each. */
  lookup(token: string): Caller | undefined {
    const presented = digest(token);
    let found: Caller | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(presented, entry.digest) && found === undefined) found = entry;
    }
    return found;
  }
}
