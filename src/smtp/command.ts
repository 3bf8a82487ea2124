// One handshake command through emailjs (greeting, EHLO, STARTTLS, AUTH)
// under a deadline, and what its failure means.
//
// TRAP: a command on a socket the server closed can wait forever in emailjs,
// so every command races its own deadline and the loss of the link.
import { MailroomError } from '../errors.js';
import type { Link } from './link.js';
import { parseSmtpReply, replyError, type SmtpStage } from './reply.js';

export type Callback = (err: Error | null | undefined, data?: unknown) => void;

/** emailjs's errors carry the reply in `smtp`, sometimes on the wrapped `previous` error. */
interface EmailjsError extends Error {
  smtp?: unknown;
  previous?: EmailjsError | null;
  code?: unknown;
}

const TLS_ERROR = /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL|UNABLE_TO|HOSTNAME|ssl|handshake/i;

/**
 * Runs `start` (which calls emailjs and passes it `done`) and resolves with
 * the reply text. `restart(ms)` gives the command a fresh deadline from now
 * (the greeting's clock starts at the TCP connect). A missed deadline drops
 * the link with ETIMEDOUT.
 */
export function command(link: Link, stage: SmtpStage, timeoutMs: number, start: (done: Callback, restart: (ms: number) => void) => void): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    if (link.lost !== undefined) {
      reject(link.lost);
      return;
    }
    let settled = false;
    const finish = (err: MailroomError | undefined, value: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unsubscribe();
      if (err !== undefined) reject(err);
      else resolve(value);
    };
    const expire = (ms: number) => (): void => link.destroy(new MailroomError('ETIMEDOUT', `no answer to ${stage} within ${ms} ms`));
    let timer = setTimeout(expire(timeoutMs), timeoutMs);
    const unsubscribe = link.onLost((err) => finish(err, ''));
    const restart = (ms: number): void => {
      clearTimeout(timer);
      timer = setTimeout(expire(ms), ms);
    };
    try {
      start((err, data) => finish(err ? classify(err, stage) : undefined, typeof data === 'string' ? data : ''), restart);
    } catch (err) {
      finish(classify(err as Error, stage), '');
    }
  });
}

/** An emailjs failure as one of ours: the relay's reply when it sent one, else what went wrong at which step. */
export function classify(err: Error, stage: SmtpStage): MailroomError {
  if (err instanceof MailroomError) return err;
  const e = err as EmailjsError;
  const reply = parseSmtpReply(e.smtp) ?? parseSmtpReply(e.previous?.smtp);
  if (reply !== undefined) return replyError(reply, stage, err);
  const chain = [e, e.previous].filter((x): x is EmailjsError => x != null);
  const text = chain.map((x) => `${String(x.code ?? '')} ${x.message}`).join(' ');
  if (stage === 'auth') {
    return new MailroomError('EAUTH', `SMTP AUTH failed: ${err.message}`, { cause: err });
  }
  if (TLS_ERROR.test(text) || stage === 'starttls') {
    return new MailroomError('ETLS', `TLS with the SMTP relay failed: ${e.previous?.message ?? err.message}`, { cause: err });
  }
  return new MailroomError('ECONNECTION', `SMTP ${stage}: ${e.previous?.message ?? err.message}`, { cause: err });
}
