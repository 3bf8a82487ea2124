// nodemailer sending straight to the sink, run in its own process: what a user
// of this machine would otherwise pick. `pool: true` keeps maxConnections
// connections open (nodemailer's SMTP pool); `pool: false` dials, TLS
// handshakes and authenticates for every message.
//
//   node dist/bench/nodemailer-runner.js '{"port":1234,"tls":true,"ca":"...","pool":true,"maxConnections":5,...}'
import nodemailer from 'nodemailer';
import { BENCH_AUTH, BENCH_MAIL, benchPdf, drive, runChild, send } from './common.js';

export interface NodemailerOptions {
  readonly port: number;
  readonly tls: boolean;
  readonly ca?: string;
  readonly auth: boolean;
  readonly pool: boolean;
  readonly maxConnections: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly count: number;
  /** one attachment (report.pdf) of this many bytes, the same as the loadgen's */
  readonly attachmentBytes?: number;
}

const opts = JSON.parse(process.argv[2] ?? '{}') as NodemailerOptions;

runChild(async () => {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: opts.port,
    secure: opts.tls,
    ignoreTLS: !opts.tls,
    ...(opts.tls ? { tls: { ca: opts.ca, rejectUnauthorized: true } } : {}),
    ...(opts.auth ? { auth: { user: BENCH_AUTH.user, pass: BENCH_AUTH.pass } } : {}),
    ...(opts.pool ? { pool: true, maxConnections: opts.maxConnections } : {}),
  });
  const attachments = opts.attachmentBytes === undefined ? undefined : [{ filename: 'report.pdf', content: benchPdf(opts.attachmentBytes) }];
  send({ type: 'ready' });
  const result = await drive(opts, async () => {
    await transport.sendMail({ from: BENCH_MAIL.from, to: BENCH_MAIL.to, subject: BENCH_MAIL.subject, text: BENCH_MAIL.text, ...(attachments !== undefined ? { attachments } : {}) });
  });
  transport.close();
  return result;
});
