// emailjs's SMTPConnection for the handshake: the socket exposed, every
// reply handed back as it came, a verifying STARTTLS, and the socket handed
// over to the session once the handshake is done.
//
// It relies on emailjs internals: the protected `sock`, `monitor`, `features`
// and `_secure` fields, `send()`, and SMTPResponseMonitor's constructor.
// emailjs is pinned to one version, and test/emailjs-internals.test.ts fails
// when one of them is gone.
import type { Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { SMTPConnection, SMTPError, SMTPErrorStates, SMTPResponseMonitor } from 'emailjs';
import type { TlsSessionCache } from './options.js';
import { keepSessions } from './tls.js';

/** Exposes the protected socket and replaces emailjs's STARTTLS. */
export class PooledConnection extends SMTPConnection {
  socket(): Socket | TLSSocket | null {
    return this.sock;
  }

  // TRAP: emailjs's command() quietly resends a command whose 450/451 reply
  // mentions "greylist", on the same connection 300 ms later. Retrying is the
  // supervisor's call (another connection, backoff, an attempt counted), so
  // every reply goes back to the caller as it came. Every emailjs command
  // (ehlo, login, mail, rcpt, data, quit) runs through this override.
  override command(cmd: string, callback: (err: Error | null | undefined, data?: unknown, message?: string) => void, codes: number[] | number = [250]): void {
    const accepted = Array.isArray(codes) ? codes : [codes];
    this.send(cmd + '\r\n', (err, data) => {
      if (err) {
        callback(err);
        return;
      }
      const reply = data as { code?: string; data?: string; message?: string } | undefined;
      if (accepted.includes(Number(reply?.code))) {
        // the message text is CRAM-MD5's challenge
        callback(null, reply?.data, reply?.message);
        return;
      }
      const suffix = reply?.message ? `: ${reply.message}` : '';
      callback(SMTPError.create(`bad response on command '${cmd.split(' ')[0] ?? ''}'${suffix}`, SMTPErrorStates.BADRESPONSE, null, reply?.data));
    });
  }

  // TRAP: emailjs's starttls() wraps the socket in `new TLSSocket` without
  // verifying the server's certificate, and its ehlo() ignores a STARTTLS
  // failure and carries on in plain text. This upgrade verifies like tls.connect.
  upgrade(tlsOptions: ConnectionOptions, sessions: TlsSessionCache | undefined, callback: (err: Error | null) => void): void {
    const plain = this.sock;
    if (plain === null) {
      callback(new Error('no socket to upgrade'));
      return;
    }
    this.monitor?.stop();
    const secure = tlsConnect({ ...tlsOptions, socket: plain });
    secure.setNoDelay(true);
    keepSessions(secure, sessions);
    const onError = (err: Error): void => {
      secure.destroy();
      callback(err);
    };
    secure.once('error', onError);
    secure.once('secureConnect', () => {
      secure.off('error', onError);
      this.sock = secure;
      this._secure = true;
      this.features = null;
      this.monitor = new SMTPResponseMonitor(secure, 0, () => this.close(true));
      secure.setTimeout(0);
      callback(null);
    });
  }

  /**
   * Ends emailjs's part: its reply monitor stops and the socket goes to
   * whoever reads replies next (the session). emailjs keeps the socket only
   * to close it.
   */
  release(): Socket | TLSSocket {
    const sock = this.sock;
    if (sock === null) throw new Error('no socket to hand over');
    this.monitor?.stop();
    this.monitor = null;
    return sock;
  }
}
