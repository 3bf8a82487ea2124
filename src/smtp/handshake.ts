// The pure parts of the handshake: what an EHLO reply offers, and what AUTH
// sends for each mechanism mailroom speaks.
import { createHmac } from 'node:crypto';
import type { SmtpReply } from '../errors.js';
import type { Features } from './session.js';

/**
 * The extensions in EHLO's lines ("250-PIPELINING", "250 AUTH PLAIN LOGIN",
 * and the old "250-AUTH=LOGIN" some relays still send). The first line is
 * the relay's name.
 */
export function parseEhlo(lines: readonly string[]): Features {
  let pipelining = false;
  let chunking = false;
  let starttls = false;
  const auth = new Set<string>();
  for (const line of lines.slice(1)) {
    const [keyword = '', ...params] = line.slice(4).trim().split(/[\s=]+/);
    switch (keyword.toUpperCase()) {
      case 'PIPELINING':
        pipelining = true;
        break;
      case 'CHUNKING':
        chunking = true;
        break;
      case 'STARTTLS':
        starttls = true;
        break;
      case 'AUTH':
        for (const p of params) if (p !== '') auth.add(p.toUpperCase());
        break;
    }
  }
  return { pipelining, chunking, starttls, auth: [...auth] };
}

/** The mechanisms mailroom speaks, in the order it prefers them: PLAIN costs one round trip. */
export const AUTH_MECHANISMS = ['PLAIN', 'LOGIN', 'CRAM-MD5'] as const;
export type AuthMechanism = (typeof AUTH_MECHANISMS)[number];

export function chooseMechanism(offered: readonly string[]): AuthMechanism | undefined {
  return AUTH_MECHANISMS.find((m) => offered.includes(m));
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/**
 * One AUTH exchange as a list of steps: each the line to send and the codes
 * that carry on. `challenge` is the text of the relay's last 334 (CRAM-MD5
 * signs it).
 */
export interface AuthStep {
  readonly line: (challenge: string) => string;
  /** 334: the relay wants the next step; 235: done */
  readonly expect: 334 | 235;
}

export function authSteps(mechanism: AuthMechanism, user: string, password: string): AuthStep[] {
  switch (mechanism) {
    case 'PLAIN':
      return [{ line: () => `AUTH PLAIN ${b64(`\u0000${user}\u0000${password}`)}`, expect: 235 }];
    case 'LOGIN':
      return [
        { line: () => 'AUTH LOGIN', expect: 334 },
        { line: () => b64(user), expect: 334 },
        { line: () => b64(password), expect: 235 },
      ];
    case 'CRAM-MD5':
      return [
        { line: () => 'AUTH CRAM-MD5', expect: 334 },
        {
          line: (challenge) => b64(`${user} ${createHmac('md5', password).update(Buffer.from(challenge, 'base64').toString('latin1')).digest('hex')}`),
          expect: 235,
        },
      ];
  }
}

/** A reply to AUTH may echo what was sent (the credential): only its codes are kept. */
export function withoutText(reply: SmtpReply): SmtpReply {
  return { code: reply.code, enhanced: reply.enhanced, text: '' };
}
