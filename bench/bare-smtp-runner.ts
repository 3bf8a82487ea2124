// The bare SMTP path: the least a Node process can spend to hand the bench's
// message to the relay over persistent TLS + AUTH connections. No gRPC, no
// actors, no validation, no recycling; the message is composed once and only
// its Message-ID changes. Commands are pipelined across messages as
// mailroom's connections do (RFC 2920: the next MAIL/RCPT/DATA go in the same
// write as the dot before them), so what it spends a mail is the floor of
// mailroom's SMTP side on this machine, measured in the same run.
//
//   node dist/bench/bare-smtp-runner.js '{"port":1234,"ca":"...","connections":5,"concurrency":15,...}'
import { connect, type TLSSocket } from 'node:tls';
import { BENCH_AUTH, BENCH_MAIL, drive, runChild, send } from './common.js';

export interface BareSmtpOptions {
  readonly port: number;
  readonly ca: string;
  readonly connections: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly count: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as BareSmtpOptions;

const COMMANDS = `MAIL FROM:<${BENCH_MAIL.from}>\r\nRCPT TO:<${BENCH_MAIL.to}>\r\nDATA\r\n`;
const HEAD = `From: ${BENCH_MAIL.from}\r\nTo: ${BENCH_MAIL.to}\r\nSubject: ${BENCH_MAIL.subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n`;
let serial = 0;
const content = (): string => `${HEAD}Date: ${new Date().toUTCString()}\r\nMessage-ID: <${++serial}.bare@example.com>\r\n\r\n${BENCH_MAIL.text}.\r\n`;

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}
/** A reply the connection waits for, in the order the relay sends them. */
type Expect = { readonly step: 'mail' | 'rcpt' | 'data' | 'dot'; readonly who: Waiter };

class BareConnection {
  private readonly queue: Waiter[] = [];
  private readonly expect: Expect[] = [];
  private buffered = '';

  private constructor(private readonly socket: TLSSocket) {}

  static async open(port: number, ca: string): Promise<BareConnection> {
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    socket.setEncoding('utf8');
    let pending = '';
    const reply = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const look = (): void => {
          const m = /^(\d{3}) .*\r\n/m.exec(pending);
          if (m === null) return;
          pending = pending.slice(m.index + m[0].length);
          socket.off('data', onData);
          socket.off('error', reject);
          resolve(m[1] as string);
        };
        const onData = (chunk: string): void => {
          pending += chunk;
          look();
        };
        socket.on('data', onData);
        socket.once('error', reject);
        look();
      });
    const step = async (line: string | undefined, want: string): Promise<void> => {
      if (line !== undefined) socket.write(`${line}\r\n`);
      const code = await reply();
      if (code !== want) throw new Error(`${line ?? 'greeting'}: ${code}`);
    };
    await step(undefined, '220');
    await step('EHLO bare.bench', '250');
    await step(`AUTH PLAIN ${Buffer.from(`\0${BENCH_AUTH.user}\0${BENCH_AUTH.pass}`).toString('base64')}`, '235');
    const conn = new BareConnection(socket);
    conn.buffered = pending;
    socket.on('data', (chunk: string) => conn.read(chunk));
    return conn;
  }

  get load(): number {
    return this.queue.length + this.expect.length;
  }

  send(): Promise<void> {
    return new Promise((resolve, reject) => {
      const who = { resolve, reject };
      if (this.expect.length === 0) this.start(who, '');
      else this.queue.push(who);
    });
  }

  close(): void {
    this.socket.end('QUIT\r\n');
  }

  private start(who: Waiter, before: string): void {
    this.expect.push({ step: 'mail', who }, { step: 'rcpt', who }, { step: 'data', who });
    this.socket.write(before + COMMANDS);
  }

  private read(chunk: string): void {
    this.buffered += chunk;
    for (let end = this.buffered.indexOf('\r\n'); end >= 0; end = this.buffered.indexOf('\r\n')) {
      const line = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 2);
      if (line[3] === '-') continue;
      this.answer(line.slice(0, 3));
    }
  }

  private answer(code: string): void {
    const e = this.expect.shift();
    if (e === undefined) {
      if (code === '221') return; // QUIT's answer
      throw new Error(`unexpected reply ${code}`);
    }
    if (e.step === 'data') {
      if (code !== '354') return e.who.reject(new Error(`DATA: ${code}`));
      this.expect.push({ step: 'dot', who: e.who });
      const next = this.queue.shift();
      if (next === undefined) this.socket.write(content());
      else this.start(next, content());
    } else if (e.step === 'dot') {
      if (code === '250') e.who.resolve();
      else e.who.reject(new Error(`message: ${code}`));
      const next = this.expect.length === 0 ? this.queue.shift() : undefined;
      if (next !== undefined) this.start(next, '');
    } else if (code !== '250') e.who.reject(new Error(`${e.step.toUpperCase()}: ${code}`));
  }
}

runChild(async () => {
  const conns = await Promise.all(Array.from({ length: opts.connections }, () => BareConnection.open(opts.port, opts.ca)));
  send({ type: 'ready' });
  const result = await drive(opts, () => conns.reduce((a, b) => (b.load < a.load ? b : a)).send());
  for (const c of conns) c.close();
  return result;
});
