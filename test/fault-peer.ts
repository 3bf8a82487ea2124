// A scriptable SMTP peer on raw sockets, for fault injection. It speaks just
// enough ESMTP (EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, BDAT when
// asked to offer CHUNKING, RSET, NOOP, QUIT) and lets a test decide, per connection and per command, to
// answer normally, answer with any reply, drop or reset the socket, stall, or
// answer late. It records every accepted message with the connection that
// carried it, every command, and every protocol violation a client commits
// (MAIL before AUTH, a command after QUIT…), so tests assert what the relay saw.
// One file over 300 lines: the peer's dialogue is one state machine per
// connection, and splitting it would scatter the protocol it checks.
import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';

/**
 * Where in the dialogue a script is asked what to do:
 * - `connect`: before the greeting
 * - a verb (`EHLO`, `MAIL`, `RCPT`, `DATA`, `NOOP`, `RSET`, `QUIT`, `STARTTLS`, `AUTH`): on that command
 * - `body`: at the first chunk of message data after 354, or after a BDAT command line (drop here = mid-DATA, mid-chunk)
 * - `dot`: after the final dot, or the whole BDAT LAST chunk, before the reply (drop here = the ambiguous case)
 */
export type Stage = 'connect' | 'body' | 'dot' | 'EHLO' | 'HELO' | 'STARTTLS' | 'AUTH' | 'MAIL' | 'RCPT' | 'DATA' | 'NOOP' | 'RSET' | 'QUIT' | 'OTHER';

export interface FaultContext {
  readonly stage: Stage;
  /** connection number, 1 for the first one the peer accepted */
  readonly conn: number;
  /** the command's argument, e.g. "FROM:<a@example.com>" */
  readonly arg: string;
  /** messages already accepted on this connection */
  readonly accepted: number;
  /** messages accepted by the peer overall */
  readonly total: number;
  /** how many times this stage has been seen on this connection, this one included */
  readonly seen: number;
}

export type Fault =
  /** answer with this reply instead of the normal one; then `close` the socket or `stall` (read nothing more) */
  | { readonly reply: string; readonly close?: boolean; readonly stall?: boolean }
  /** close the socket without a word (`reset`: with a TCP RST) */
  | { readonly drop: true; readonly reset?: boolean }
  /** never answer; the socket stays open until the client gives up */
  | { readonly stall: true }
  /** answer normally (or with `then`) after `ms` */
  | { readonly delay: number; readonly then?: Fault }
  /**
   * a hostile relay: instead of a reply, send without end either continuation
   * lines of a reply that never finishes (`lines`, with this code) or bytes
   * that never end a line (`unterminated`), until the client goes away
   */
  | { readonly flood: 'lines' | 'unterminated'; readonly code?: string };

export type Script = (ctx: FaultContext) => Fault | undefined;

export interface PeerMessage {
  readonly conn: number;
  readonly from: string;
  readonly to: string[];
  readonly data: string;
  readonly messageId: string | undefined;
  readonly at: number;
}

export interface PeerConnection {
  readonly n: number;
  readonly openedAt: number;
  authed: boolean;
  tls: boolean;
  accepted: number;
  quit: boolean;
  closedAt: number | undefined;
}

export interface PeerCommand {
  readonly conn: number;
  readonly verb: string;
  /** when the peer handled it (commands are handled one by one, replies delayed in turn) */
  readonly at: number;
  /** when its line reached the peer: earlier than `at` for a command pipelined behind a delayed one */
  readonly arrivedAt: number;
}

export interface FaultPeerOptions {
  /** key and certificate for STARTTLS; without them STARTTLS is not offered */
  readonly tls?: { key: string; cert: string };
  /** require AUTH with these credentials before MAIL */
  readonly auth?: { user: string; pass: string };
  /** offer CHUNKING (RFC 3030) and take BDAT */
  readonly chunking?: boolean;
  /** offer PIPELINING (RFC 2920); default true. Without it, a command sent before the reply to the one before is a violation */
  readonly pipelining?: boolean;
  readonly script?: Script;
}

const CRLF = '\r\n';

export class FaultPeer {
  readonly messages: PeerMessage[] = [];
  readonly connections: PeerConnection[] = [];
  readonly commands: PeerCommand[] = [];
  /** messages the peer kept but never confirmed (dropped or stalled after the final dot) */
  ambiguous = 0;
  /** bytes sent by `flood` faults */
  flooded = 0;
  /** protocol rules a client broke; every test expects none */
  readonly violations: string[] = [];
  /** replaced at will by a test; undefined answers are normal behaviour */
  script: Script | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly waiters: { test: () => boolean; resolve: () => void }[] = [];
  private server!: Server;

  private constructor(readonly options: FaultPeerOptions) {
    this.script = options.script;
  }

  static async start(options: FaultPeerOptions = {}): Promise<FaultPeer> {
    const peer = new FaultPeer(options);
    peer.server = createServer((sock) => peer.accept(sock));
    peer.server.listen(0, '127.0.0.1');
    await once(peer.server, 'listening');
    return peer;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** commands with this verb, optionally on one connection */
  count(verb: string, conn?: number): number {
    return this.commands.filter((c) => c.verb === verb && (conn === undefined || c.conn === conn)).length;
  }

  /** accepted messages whose Subject header is exactly `subject` */
  withSubject(subject: string): PeerMessage[] {
    return this.messages.filter((m) => m.data.includes(`\r\nSubject: ${subject}\r\n`) || m.data.startsWith(`Subject: ${subject}\r\n`));
  }

  /** Resolves when `test` holds; checked after every event the peer records. */
  until(test: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fault peer: ${what} not reached within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ test, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  /** Drops every open connection at once (a relay restart). */
  dropAll(): void {
    for (const sock of this.sockets) sock.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private changed(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.test()) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  private accept(sock: Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    const info: PeerConnection = { n: this.connections.length + 1, openedAt: Date.now(), authed: false, tls: false, accepted: 0, quit: false, closedAt: undefined };
    this.connections.push(info);
    sock.once('close', () => {
      this.sockets.delete(sock);
      info.closedAt = Date.now();
      this.changed();
    });
    new PeerSession(this, sock, info).start();
    this.changed();
  }

  /** @internal */ record(kind: 'command', value: PeerCommand): void;
  /** @internal */ record(kind: 'message', value: PeerMessage): void;
  record(kind: 'command' | 'message', value: PeerCommand | PeerMessage): void {
    if (kind === 'command') this.commands.push(value as PeerCommand);
    else this.messages.push(value as PeerMessage);
    this.changed();
  }
}

interface Transaction {
  from: string;
  to: string[];
}

/** One client connection: a line reader and a strictly serial command loop. */
class PeerSession {
  private stream: Duplex;
  private buffer = '';
  /** command lines as they arrived; a BDAT line carries its chunk */
  private readonly lines: { text: string; at: number; chunk?: string }[] = [];
  /** a BDAT line whose chunk is still arriving */
  private chunkLine: { text: string; size: number } | undefined;
  /** the chunks of the BDAT transaction so far */
  private chunks: string[] = [];
  /** arrival time of the line being handled */
  private lineAt = 0;
  private busy = false;
  private closed = false;
  private tx: Transaction | undefined;
  private ehloDone = false;
  private dataLines: string[] | undefined;
  private bodyFault: Fault | undefined;
  /** multi-step AUTH LOGIN / AUTH PLAIN without an initial response */
  private authStep: { method: 'PLAIN' | 'LOGIN-USER' | 'LOGIN-PASS'; user?: string } | undefined;
  private readonly seen = new Map<Stage, number>();
  private readonly onData = (chunk: Buffer): void => this.feed(chunk.toString('latin1'));

  constructor(
    private readonly peer: FaultPeer,
    private readonly sock: Socket,
    private readonly info: PeerConnection,
  ) {
    this.stream = sock;
    sock.once('close', () => {
      this.closed = true;
    });
  }

  start(): void {
    void this.run('connect', '', () => this.write('220 fault-peer ESMTP ready'));
    this.stream.on('data', this.onData);
  }

  private feed(text: string): void {
    if (this.closed) return;
    if (this.dataLines !== undefined && this.bodyFault !== undefined) {
      // The first chunk of message data has arrived: the fault fires mid-DATA.
      const fault = this.bodyFault;
      this.bodyFault = undefined;
      if (this.apply(fault, () => undefined) === 'stop') return;
    }
    this.buffer += text;
    const at = Date.now();
    for (;;) {
      if (this.chunkLine !== undefined) {
        // BDAT: the next `size` octets are content, line ends and all (latin1: a character an octet).
        if (this.buffer.length < this.chunkLine.size) break;
        this.lines.push({ text: this.chunkLine.text, at, chunk: this.buffer.slice(0, this.chunkLine.size) });
        this.buffer = this.buffer.slice(this.chunkLine.size);
        this.chunkLine = undefined;
        continue;
      }
      const i = this.buffer.indexOf(CRLF);
      if (i < 0) break;
      const line = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      if (this.peer.options.pipelining === false && this.dataLines === undefined && (this.busy || this.lines.length > 0)) {
        this.peer.violations.push(`conn ${this.info.n}: "${line.split(' ')[0] ?? ''}" sent before the reply to the command before it, without PIPELINING`);
      }
      const bdat = this.peer.options.chunking === true ? /^BDAT (\d+)( LAST)?$/i.exec(line) : null;
      if (bdat !== null) {
        this.chunkLine = { text: line, size: Number(bdat[1]) };
        // Mid-chunk faults fire as its content starts to arrive.
        const fault = this.ask('body', '');
        if (fault !== undefined && this.apply(fault, () => undefined) === 'stop') return;
        continue;
      }
      this.lines.push({ text: line, at });
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.lines.length > 0 && !this.closed) {
        const line = this.lines.shift() as { text: string; at: number; chunk?: string };
        this.lineAt = line.at;
        if (line.chunk !== undefined) await this.bdat(line.text, line.chunk);
        else await this.handle(line.text);
      }
    } finally {
      this.busy = false;
    }
  }

  private write(line: string): void {
    if (!this.closed && this.stream.writable) this.stream.write(line + CRLF);
  }

  private ask(stage: Stage, arg: string): Fault | undefined {
    const seen = (this.seen.get(stage) ?? 0) + 1;
    this.seen.set(stage, seen);
    return this.peer.script?.({ stage, conn: this.info.n, arg, accepted: this.info.accepted, total: this.peer.messages.length, seen });
  }

  /**
   * Applies a fault, or the normal behaviour when there is none. Returns
   * 'stop' when the connection is gone or stalled for good.
   */
  private apply(fault: Fault | undefined, normal: () => void): 'stop' | 'replied' | Promise<'stop' | 'replied'> {
    if (fault === undefined) {
      normal();
      return 'replied';
    }
    if ('drop' in fault) {
      if (fault.reset === true) this.sock.resetAndDestroy();
      else this.sock.destroy();
      this.closed = true;
      return 'stop';
    }
    if ('flood' in fault) {
      const chunk = fault.flood === 'lines' ? `${fault.code ?? '250'}-${'y'.repeat(200)}\r\n`.repeat(64) : 'z'.repeat(16_384);
      const pump = (): void => {
        if (this.sock.destroyed || !this.stream.writable) return;
        this.peer.flooded += chunk.length;
        if (this.stream.write(chunk)) setImmediate(pump);
        else this.stream.once('drain', pump);
      };
      pump();
      this.closed = true; // read nothing more
      return 'stop';
    }
    if ('stall' in fault) {
      this.closed = true; // read nothing more; the client's deadline has to fire
      return 'stop';
    }
    if ('reply' in fault) {
      this.write(fault.reply);
      if (fault.close === true) this.stream.end();
      if (fault.close === true || fault.stall === true) {
        this.closed = true;
        return 'stop';
      }
      return 'replied';
    }
    return new Promise((resolve) => {
      // A connection closed meanwhile has nothing to answer: the timer must not keep a test's process alive.
      setTimeout(() => {
        if (this.closed) resolve('stop');
        else resolve(this.apply(fault.then, normal));
      }, fault.delay).unref();
    });
  }

  private async run(stage: Stage, arg: string, normal: () => void): Promise<boolean> {
    return (await this.apply(this.ask(stage, arg), normal)) === 'replied';
  }

  private async handle(line: string): Promise<void> {
    if (this.dataLines !== undefined) {
      if (line !== '.') {
        this.dataLines.push(line.startsWith('.') ? line.slice(1) : line);
        return;
      }
      const data = this.dataLines.join(CRLF) + CRLF;
      const tx = this.tx as Transaction;
      this.dataLines = undefined;
      this.tx = undefined;
      await this.complete(tx, data);
      return;
    }
    if (this.authStep !== undefined) {
      await this.authContinue(line);
      return;
    }
    const space = line.indexOf(' ');
    const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    const arg = space < 0 ? '' : line.slice(space + 1);
    this.peer.record('command', { conn: this.info.n, verb, at: Date.now(), arrivedAt: this.lineAt });
    if (this.info.quit) this.peer.violations.push(`conn ${this.info.n}: ${verb} after QUIT`);
    const stage: Stage = (['EHLO', 'HELO', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'NOOP', 'RSET', 'QUIT'] as const).find((v) => v === verb) ?? 'OTHER';
    switch (stage) {
      case 'EHLO':
      case 'HELO':
        await this.run(stage, arg, () => {
          this.ehloDone = true;
          this.tx = undefined;
          const ext = ['250-fault-peer', ...(this.peer.options.pipelining === false ? [] : ['250-PIPELINING']), '250-8BITMIME', '250-SMTPUTF8', '250-SIZE 67108864'];
          if (this.peer.options.chunking === true) ext.push('250-CHUNKING');
          if (this.peer.options.tls !== undefined && !this.info.tls) ext.push('250-STARTTLS');
          if (this.peer.options.auth !== undefined) ext.push('250-AUTH PLAIN LOGIN');
          ext.push('250 ENHANCEDSTATUSCODES');
          this.write(ext.join(CRLF));
        });
        return;
      case 'STARTTLS':
        await this.run(stage, arg, () => {
          const tls = this.peer.options.tls;
          if (tls === undefined || this.info.tls) {
            this.write('502 5.5.1 STARTTLS not available');
            return;
          }
          this.write('220 2.0.0 Ready to start TLS');
          this.upgrade(tls);
        });
        return;
      case 'AUTH':
        await this.run(stage, arg, () => this.authStart(arg));
        return;
      case 'MAIL':
        await this.run(stage, arg, () => {
          if (!this.ehloDone) this.peer.violations.push(`conn ${this.info.n}: MAIL before EHLO`);
          if (this.peer.options.auth !== undefined && !this.info.authed) {
            this.peer.violations.push(`conn ${this.info.n}: MAIL on an unauthenticated connection`);
            this.write('530 5.7.0 Authentication required');
            return;
          }
          if (this.tx !== undefined) {
            this.peer.violations.push(`conn ${this.info.n}: MAIL inside a transaction (no RSET after a failure?)`);
            this.write('503 5.5.1 Error: nested MAIL command');
            return;
          }
          this.tx = { from: addressIn(arg), to: [] };
          this.write('250 2.1.0 Ok');
        });
        return;
      case 'RCPT':
        await this.run(stage, arg, () => {
          if (this.tx === undefined) {
            this.write('503 5.5.1 Error: need MAIL command');
            return;
          }
          this.tx.to.push(addressIn(arg));
          this.write('250 2.1.5 Ok');
        });
        return;
      case 'DATA':
        await this.run(stage, arg, () => {
          if (this.tx === undefined || this.tx.to.length === 0) {
            this.write('554 5.5.1 Error: no valid recipients');
            return;
          }
          this.write('354 End data with <CR><LF>.<CR><LF>');
          this.dataLines = [];
          this.bodyFault = this.ask('body', '');
        });
        return;
      case 'RSET':
        await this.run(stage, arg, () => {
          this.tx = undefined;
          this.write('250 2.0.0 Ok');
        });
        return;
      case 'NOOP':
        await this.run(stage, arg, () => this.write('250 2.0.0 Ok'));
        return;
      case 'QUIT':
        this.info.quit = true;
        await this.run(stage, arg, () => {
          this.write('221 2.0.0 Bye');
          this.stream.end();
          this.closed = true;
        });
        return;
      default:
        await this.run('OTHER', arg, () => this.write('502 5.5.2 Error: command not recognized'));
    }
  }

  /** The whole of a message is in (final dot, or BDAT LAST): the `dot` stage decides its reply. */
  private async complete(tx: Transaction, data: string): Promise<void> {
    const fault = this.ask('dot', '');
    // A drop after the final dot leaves the client unsure: a real relay may
    // well deliver what it fully received, so the peer counts it accepted.
    if (fault !== undefined && ('drop' in fault || 'stall' in fault)) this.peer.ambiguous++;
    const refused = fault !== undefined && 'reply' in fault && !fault.reply.startsWith('2');
    if (!refused) this.accept(tx, data);
    await this.apply(fault, () => this.write(`250 2.0.0 Ok: queued as m${this.peer.messages.length}`));
  }

  /** RFC 3030: a chunk of content; the LAST one completes the message. A chunk with no valid transaction is read and refused. */
  private async bdat(line: string, chunk: string): Promise<void> {
    this.peer.record('command', { conn: this.info.n, verb: 'BDAT', at: Date.now(), arrivedAt: this.lineAt });
    if (this.info.quit) this.peer.violations.push(`conn ${this.info.n}: BDAT after QUIT`);
    const last = / LAST$/i.test(line);
    if (this.tx === undefined || this.tx.to.length === 0) {
      const reply = this.tx === undefined ? '503 5.5.1 Error: need MAIL and RCPT' : '554 5.5.1 Error: no valid recipients';
      this.chunks = [];
      this.tx = undefined;
      this.write(reply);
      return;
    }
    this.chunks.push(chunk);
    if (!last) {
      this.write(`250 2.0.0 ${chunk.length} octets received`);
      return;
    }
    const tx = this.tx;
    const data = this.chunks.join('');
    this.chunks = [];
    this.tx = undefined;
    await this.complete(tx, data);
  }

  private accept(tx: Transaction, data: string): void {
    this.info.accepted++;
    const header = data.slice(0, Math.max(0, data.indexOf(CRLF + CRLF)));
    const messageId = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(header)?.[1];
    this.peer.record('message', { conn: this.info.n, from: tx.from, to: tx.to, data, messageId, at: Date.now() });
  }

  private upgrade(tls: { key: string; cert: string }): void {
    // The client's next bytes are its ClientHello: stop reading lines now.
    this.stream.off('data', this.onData);
    const secure = new TLSSocket(this.sock, { isServer: true, secureContext: createSecureContext({ key: tls.key, cert: tls.cert }) });
    secure.on('error', () => this.sock.destroy());
    secure.once('secure', () => {
      this.info.tls = true;
      this.ehloDone = false;
      this.tx = undefined;
    });
    this.stream = secure;
    secure.on('data', this.onData);
  }

  private authStart(arg: string): void {
    const auth = this.peer.options.auth;
    const [method = '', initial] = arg.split(' ');
    if (auth === undefined) {
      this.write('503 5.5.1 Error: authentication not enabled');
      return;
    }
    if (method.toUpperCase() === 'PLAIN') {
      if (initial === undefined) {
        this.authStep = { method: 'PLAIN' };
        this.write('334 ');
      } else this.authCheckPlain(initial);
      return;
    }
    if (method.toUpperCase() === 'LOGIN') {
      this.authStep = { method: 'LOGIN-USER' };
      this.write('334 VXNlcm5hbWU6');
      return;
    }
    this.write('504 5.5.4 Unrecognized authentication type');
  }

  private async authContinue(line: string): Promise<void> {
    const step = this.authStep as NonNullable<PeerSession['authStep']>;
    this.authStep = undefined;
    if (step.method === 'PLAIN') this.authCheckPlain(line);
    else if (step.method === 'LOGIN-USER') {
      this.authStep = { method: 'LOGIN-PASS', user: Buffer.from(line, 'base64').toString('utf8') };
      this.write('334 UGFzc3dvcmQ6');
    } else this.authCheck(step.user ?? '', Buffer.from(line, 'base64').toString('utf8'));
  }

  private authCheckPlain(b64: string): void {
    const [, user = '', pass = ''] = Buffer.from(b64, 'base64').toString('utf8').split('\u0000');
    this.authCheck(user, pass);
  }

  private authCheck(user: string, pass: string): void {
    const auth = this.peer.options.auth;
    if (auth !== undefined && user === auth.user && pass === auth.pass) {
      this.info.authed = true;
      this.write('235 2.7.0 Authentication successful');
    } else {
      this.write('535 5.7.8 Error: authentication failed');
    }
  }
}

function addressIn(arg: string): string {
  return /<([^>]*)>/.exec(arg)?.[1] ?? arg.replace(/^(FROM|TO):/i, '').trim();
}

/**
 * A port where TCP connects hang: a listener in a stopped child process with
 * a backlog of one, filled up, so the kernel drops further SYNs. The only
 * way to see a connect timeout on loopback.
 */
export async function startBlackhole(): Promise<{ port: number; close(): void }> {
  const { spawn } = await import('node:child_process');
  const { connect } = await import('node:net');
  const child = spawn(
    process.execPath,
    ['-e', "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port) })"],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  child.kill('SIGSTOP');
  const fillers = Array.from({ length: 4 }, () => connect(port, '127.0.0.1').on('error', () => undefined));
  await new Promise((resolve) => setTimeout(resolve, 50));
  return {
    port,
    close() {
      for (const f of fillers) f.destroy();
      child.kill('SIGKILL');
    },
  };
}
