// gRPC load generator, run in its own process: C calls in flight, W warm-up
// calls, then N measured calls of one method; reports through common.drive.
//
//   node dist/bench/loadgen.js '{"target":"127.0.0.1:40700","method":"SendMail","concurrency":15,"warmup":500,"count":5000}'
import * as grpc from '@grpc/grpc-js';
import { loadMailDefinition, loadMailProto } from '../src/rpc/proto.js';
import { BENCH_MAIL, benchPdf, drive, runChild, send } from './common.js';
import { connectH2, encodeRequest } from './h2-unary.js';

export interface LoadgenOptions {
  readonly target: string;
  readonly method: 'SendMail' | 'SendMailBatch' | 'SendCode' | 'ValidateCode' | 'Noop';
  /** SendMailBatch: messages a call (default 100) */
  readonly batchSize?: number;
  readonly concurrency: number;
  readonly warmup: number;
  readonly count: number;
  /** SendCode/ValidateCode: how many distinct addresses to spread calls over */
  readonly addresses?: number;
  /** SendCode/ValidateCode: prefix of the local part, to keep repetitions apart */
  readonly addressPrefix?: string;
  /** SendMail: a body of this many bytes of UTF-8 instead of the receipt text */
  readonly bodyBytes?: number;
  /** with bodyBytes: 'utf8' makes it of two-byte characters (é) */
  readonly bodyKind?: 'ascii' | 'utf8';
  /** each call's deadline; default 30 s */
  readonly deadlineMs?: number;
  /** SendMail: DELIVERY_QUEUED (into the outbox) */
  readonly queued?: boolean;
  /** with queued: every message's send_at, epoch ms */
  readonly sendAt?: number;
  /** SendMail: one attachment (report.pdf) of this many bytes (see common.benchPdf) */
  readonly attachmentBytes?: number;
  /** SendMail: 'h2' sends one request, encoded once, over node's own HTTP/2 (see h2-unary.ts); default grpc-js */
  readonly client?: 'grpc-js' | 'h2';
}

const opts = JSON.parse(process.argv[2] ?? '{}') as LoadgenOptions;

runChild(async () => {
  const proto = loadMailProto();
  const creds = grpc.credentials.createInsecure();
  // Large bodies need a larger send limit than grpc-js's default client one.
  const channelOptions = { 'grpc.max_send_message_length': -1 };
  const mail = new proto.mail.MailService(opts.target, creds, channelOptions);
  const otp = new proto.mail.OtpService(opts.target, creds);
  await new Promise<void>((resolve, reject) => mail.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
  send({ type: 'ready' });
  const unary = <T>(fn: (cb: (err: grpc.ServiceError | null, res?: T) => void) => void): Promise<void> =>
    new Promise((resolve, reject) => fn((err) => (err ? reject(err) : resolve())));
  const addresses = opts.addresses ?? 10_000;
  const prefix = opts.addressPrefix ?? 'user';
  const deadlineMs = opts.deadlineMs ?? 30_000;
  const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + deadlineMs });
  const body = opts.bodyBytes === undefined ? BENCH_MAIL.text : opts.bodyKind === 'utf8' ? 'é'.repeat(Math.floor(opts.bodyBytes / 2)) : 'x'.repeat(opts.bodyBytes);
  const parts = opts.attachmentBytes === undefined ? {} : { attachments: [{ filename: 'report.pdf', content: benchPdf(opts.attachmentBytes) }] };
  const queued =
    opts.queued === true
      ? { delivery: 'DELIVERY_QUEUED' as const, ...(opts.sendAt !== undefined ? { send_at: { seconds: String(Math.floor(opts.sendAt / 1000)), nanos: (opts.sendAt % 1000) * 1e6 } } : {}) }
      : {};
  if (opts.client === 'h2') {
    if (opts.method !== 'SendMail') throw new Error('the h2 client sends SendMail only');
    const h2 = await connectH2(opts.target, '/mail.MailService/SendMail');
    const frame = encodeRequest(loadMailDefinition(), 'mail.MailService', 'SendMail', { to: BENCH_MAIL.to, subject: BENCH_MAIL.subject, body, ...parts, ...queued });
    const result = await drive(opts, () => h2.call(frame, deadlineMs));
    h2.close();
    mail.close();
    otp.close();
    return result;
  }
  const batchMessages = Array.from({ length: opts.batchSize ?? 100 }, () => ({ to: BENCH_MAIL.to, subject: BENCH_MAIL.subject, body, ...parts, ...queued }));
  const call = (i: number): Promise<void> => {
    switch (opts.method) {
      case 'SendMailBatch':
        return unary((cb) => mail.SendMailBatch({ messages: batchMessages }, deadline(), cb));
      case 'SendMail':
        return unary((cb) => mail.SendMail({ to: BENCH_MAIL.to, subject: BENCH_MAIL.subject, body, ...parts, ...queued }, deadline(), cb));
      case 'SendCode':
        return unary((cb) => otp.SendCode({ email: `${prefix}${i % addresses}@example.com` }, deadline(), cb));
      case 'ValidateCode':
      case 'Noop':
        // The no-op server answers ValidateCode of the same proto: same framing, no work.
        return unary((cb) => otp.ValidateCode({ email: `${prefix}${i % addresses}@example.com`, otpCode: '000000' }, deadline(), cb));
    }
  };
  const result = await drive(opts, call);
  mail.close();
  otp.close();
  return result;
});
