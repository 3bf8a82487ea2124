// How config.ts reads the environment: each variable by name, against its
// kind and range, collecting every problem instead of throwing at the
// first, so that a broken deployment is fixed in one round.
import { readFileSync } from 'node:fs';
import { isMailroomError } from './errors.js';
import { parseAddressList, type Address } from './mail/address.js';
import { templateProblems, unescapeNewlines } from './otp/template.js';
import { TokenTable } from './rpc/tokens.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Collects problems instead of throwing at the first one. */
export class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected a whole number from ${min} to ${max}`);
      return fallback;
    }
    return n;
  }

  /** A share from 0 to `max`: a decimal ("0.1") or a percentage ("10%"). */
  share(name: string, fallback: number, max = 1): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(value);
    const n = m === null ? NaN : Number(m[1]) / (m[2] === '%' ? 100 : 1);
    if (!Number.isFinite(n) || n > max) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected a share from 0 to ${max} (0.1, or 10%)`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const match = allowed.find((a) => a === value.toLowerCase());
    if (match === undefined) {
      this.problems.push(`${name}=${JSON.stringify(value)}: expected one of ${allowed.join(', ')}`);
      return fallback;
    }
    return match;
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    this.problems.push(`${name}=${JSON.stringify(value)}: expected true or false`);
    return fallback;
  }

  file(name: string): string | undefined {
    const path = this.raw(name);
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      this.problems.push(`${name}=${JSON.stringify(path)}: expected a readable file (${(err as Error).message})`);
      return undefined;
    }
  }

  /** A mail template: a literal backslash-n becomes a line break; placeholders must be known. */
  template(name: string, fallback: string): string {
    const raw = this.raw(name);
    const value = raw === undefined ? fallback : unescapeNewlines(raw);
    this.problems.push(...templateProblems(name, value));
    return value;
  }

  /** EMAIL_FROM, else EMAIL, else a placeholder: one address, display name allowed. */
  sender(user: string | undefined): Address {
    const set = this.raw('EMAIL_FROM');
    const value = set ?? user ?? 'mailroom@mailroom.localhost';
    const parsed = parseAddressList(value);
    if (parsed.ok && parsed.value.length === 1) return parsed.value[0] as Address;
    const name = set === undefined ? 'EMAIL_FROM (unset, so EMAIL)' : 'EMAIL_FROM';
    this.problems.push(`${name}=${JSON.stringify(value)}: expected one address, e.g. "Shop <shop@example.com>"`);
    return { name: '', address: 'mailroom@mailroom.localhost' };
  }

  /** The token table of the file `name` names; its problems join the others. */
  tokens(name: string): TokenTable | undefined {
    const text = this.file(name);
    if (text === undefined) return undefined;
    try {
      return TokenTable.parse(text, this.raw(name) ?? name);
    } catch (err) {
      if (!isMailroomError(err)) throw err;
      this.problems.push(...err.message.split('\n').slice(1).map((line) => line.trim()));
      return undefined;
    }
  }

  secret(name: string, minLength: number): string | undefined {
    const value = this.raw(name);
    if (value !== undefined && value.length < minLength) {
      this.problems.push(`${name}: expected at least ${minLength} characters`);
      return undefined;
    }
    return value;
  }
}

