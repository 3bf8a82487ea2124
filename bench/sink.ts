// A fast SMTP sink, run in its own process: accepts every message and counts
// it, keeping nothing. Implicit TLS and AUTH (PLAIN, LOGIN) when asked, plain
// otherwise. It speaks just enough SMTP for the senders in the bench, answers
// pipelined commands in order, takes BDAT when asked to offer CHUNKING, and
// reports its counts over IPC.
//
//   node dist/bench/sink.js '{"tls":{"key":"...","cert":"..."},"auth":{"user":"u","pass":"p"}}'
import { createServer as createNetServer, type Socket, type Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

interface SinkOptions {
  readonly tls?: { key: string; cert: string };
  readonly auth?: { user: string; pass: string };
  /** a slow relay: each message's 250 comes this long after its final dot, and the connection reads nothing meanwhile */
  readonly dataDelayMs?: number;
  /** offer CHUNKING (RFC 3030) and take BDAT */
  readonly chunking?: boolean;
}

export type SinkRequest = { type: 'count' } | { type: 'stop' };
export type SinkReply = { type: 'listening'; port: number } | { type: 'count'; accepted: number; connections: number; authFailures: number };

const options = JSON.parse(process.argv[2] ?? '{}') as SinkOptions;
let accepted = 0;
let connections = 0;
let authFailures = 0;

const EHLO_REPLY = [
  '250-sink.bench',
  '250-PIPELINING',
  '250-8BITMIME',
  '250-SMTPUTF8',
  '250-SIZE 104857600',
  ...(options.chunking === true ? ['250-CHUNKING'] : []),
  ...(options.auth !== undefined ? ['250-AUTH PLAIN LOGIN'] : []),
  '250 ENHANCEDSTATUSCODES',
].join('\r\n');

function plainOk(b64: string): boolean {
  const parts = Buffer.from(b64, 'base64').toString('utf8').split('\0');
  return parts[1] === options.auth?.user && parts[2] === options.auth?.pass;
}

function session(sock: Socket): void {
  connections++;
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  let buf = '';
  let inData = false;
  /** last bytes seen in DATA, to find CRLF.CRLF across chunk borders */
  let tail = '';
  let authed = options.auth === undefined;
  let authStep: '' | 'plain' | 'login-user' | 'login-pass' = '';
  let loginUser = '';
  let haveMail = false;
  let rcpts = 0;
  /** BDAT: octets of the current chunk still to come, and whether it is the LAST */
  let chunkLeft = 0;
  let chunkLast = false;

  const command = (line: string): string => {
    if (authStep !== '') {
      const step = authStep;
      authStep = '';
      if (step === 'plain') return finishAuth(plainOk(line));
      if (step === 'login-user') {
        loginUser = Buffer.from(line, 'base64').toString('utf8');
        authStep = 'login-pass';
        return '334 UGFzc3dvcmQ6';
      }
      return finishAuth(loginUser === options.auth?.user && Buffer.from(line, 'base64').toString('utf8') === options.auth?.pass);
    }
    const verb = line.slice(0, 4).toUpperCase();
    switch (verb) {
      case 'EHLO':
        return EHLO_REPLY;
      case 'HELO':
        return '250 sink.bench';
      case 'AUTH': {
        if (options.auth === undefined) return '503 5.5.1 AUTH not offered';
        const [, mech = '', initial] = line.split(' ');
        if (mech.toUpperCase() === 'PLAIN') {
          if (initial !== undefined) return finishAuth(plainOk(initial));
          authStep = 'plain';
          return '334 ';
        }
        if (mech.toUpperCase() === 'LOGIN') {
          if (initial !== undefined) {
            loginUser = Buffer.from(initial, 'base64').toString('utf8');
            authStep = 'login-pass';
            return '334 UGFzc3dvcmQ6';
          }
          authStep = 'login-user';
          return '334 VXNlcm5hbWU6';
        }
        return '504 5.5.4 mechanism not supported';
      }
      case 'MAIL':
        if (!authed) return '530 5.7.0 authentication required';
        haveMail = true;
        rcpts = 0;
        return '250 2.1.0 Ok';
      case 'RCPT':
        if (!haveMail) return '503 5.5.1 MAIL first';
        rcpts++;
        return '250 2.1.5 Ok';
      case 'DATA':
        if (rcpts === 0) return '503 5.5.1 RCPT first';
        inData = true;
        tail = '\r\n';
        return '354 End data with <CR><LF>.<CR><LF>';
      case 'RSET':
        haveMail = false;
        rcpts = 0;
        return '250 2.0.0 Ok';
      case 'NOOP':
        return '250 2.0.0 Ok';
      case 'QUIT':
        sock.end('221 2.0.0 Bye\r\n');
        return '';
      default:
        return '502 5.5.2 command not recognised';
    }
  };
  const finishAuth = (ok: boolean): string => {
    if (ok) {
      authed = true;
      return '235 2.7.0 Authentication successful';
    }
    authFailures++;
    return '535 5.7.8 authentication failed';
  };

  sock.setEncoding('latin1');
  const delay = options.dataDelayMs ?? 0;
  /** waiting out dataDelayMs: what arrives meanwhile is kept in buf */
  let holding = false;
  const feed = (text: string): void => {
    let out = '';
    let pos = 0;
    while (pos < text.length) {
      if (chunkLeft > 0) {
        // A BDAT chunk: counted octets, dropped; its reply once the last one is in.
        const take = Math.min(chunkLeft, text.length - pos);
        chunkLeft -= take;
        pos += take;
        if (chunkLeft > 0) break;
        if (!chunkLast) {
          out += '250 2.0.0 chunk received\r\n';
          continue;
        }
        haveMail = false;
        rcpts = 0;
        accepted++;
        out += `250 2.0.0 Ok: queued as ${accepted}\r\n`;
        continue;
      }
      if (inData) {
        // Only the end marker matters; the message itself is dropped.
        const probe = tail + text.slice(pos);
        const end = probe.indexOf('\r\n.\r\n');
        if (end < 0) {
          tail = probe.slice(-4);
          pos = text.length;
          break;
        }
        pos += end + 5 - tail.length;
        inData = false;
        haveMail = false;
        rcpts = 0;
        if (delay > 0) {
          if (out !== '') sock.write(out);
          holding = true;
          const rest = text.slice(pos);
          setTimeout(() => {
            holding = false;
            accepted++;
            if (sock.writableEnded) return;
            sock.write(`250 2.0.0 Ok: queued as ${accepted}\r\n`);
            const more = rest + buf;
            buf = '';
            if (more !== '') feed(more);
          }, delay);
          return;
        }
        accepted++;
        out += `250 2.0.0 Ok: queued as ${accepted}\r\n`;
        continue;
      }
      const eol = text.indexOf('\r\n', pos);
      if (eol < 0) {
        buf = text.slice(pos);
        break;
      }
      const line = text.slice(pos, eol);
      pos = eol + 2;
      const bdat = options.chunking === true ? /^BDAT (\d+)( LAST)?$/i.exec(line) : null;
      if (bdat !== null && rcpts > 0) {
        chunkLeft = Number(bdat[1]);
        chunkLast = bdat[2] !== undefined;
        continue;
      }
      const reply = command(line);
      if (reply !== '') out += `${reply}\r\n`;
      if (sock.writableEnded) return;
    }
    if (out !== '' && !sock.writableEnded) sock.write(out);
  };
  sock.on('data', (chunk: string) => {
    if (holding) {
      buf += chunk;
      return;
    }
    const text = buf + chunk;
    buf = '';
    feed(text);
  });
  sock.write('220 sink.bench ESMTP\r\n');
}

const server: Server = options.tls !== undefined ? createTlsServer({ key: options.tls.key, cert: options.tls.cert }, session) : createNetServer(session);
server.on('tlsClientError', () => undefined);
server.listen(0, '127.0.0.1', () => {
  const port = (server.address() as { port: number }).port;
  process.send?.({ type: 'listening', port } satisfies SinkReply);
});
process.on('message', (m: SinkRequest) => {
  if (m.type === 'count') process.send?.({ type: 'count', accepted, connections, authFailures } satisfies SinkReply);
  else if (m.type === 'stop') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
