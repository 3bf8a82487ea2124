#!/usr/bin/env node
// mailroom's command-line client (`npx mailroom …`, `npm run client -- …`):
//   mailroom send --to a@example.com --subject hi --body text [--queued [--send-at ISO]]
//   mailroom status ID | cancel ID | watch [--after CURSOR]
//   mailroom send-code --email a@example.com
//   mailroom validate-code --email a@example.com --code 123456
//   mailroom suppress add|remove|get ADDR | suppress list
// Exit codes: 0 success; 1 the call failed, or the code is not valid;
// 2 a usage error. Replies are printed as JSON with proto JSON (camelCase)
// names; a failure prints its status, details and mailroom's metadata.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../rpc/proto.js';
import type { SendEmailRequest } from '../generated/mail/SendEmailRequest.js';
import type { ValidateCodeRequest } from '../generated/mail/ValidateCodeRequest.js';
import type { ValidateCodeResponse__Output } from '../generated/mail/ValidateCodeResponse.js';
import { channelCredentials, printFailure, toProtoJson, UsageError, type CallUnary, type Unary } from './io.js';
import { attachmentsFrom, headersFrom } from './send-parts.js';
import { suppress } from './suppress.js';

const USAGE = `usage:
  mailroom send --to ADDR --subject TEXT (--body TEXT | --body-file FILE|-) [--html HTML | --html-file FILE|-]
                [--cc ADDR]... [--bcc ADDR]... [--reply-to ADDR] [--idempotency-key KEY] [--repeat N --concurrency N]
                [--attach FILE]... [--inline CID=FILE]... [--header 'Name: value']... [--list-unsubscribe URL[,mailto:ADDR]]
                [--queued [--send-at ISO-8601]]    (queued: stored durably, answered at once, delivered by mailroom)
  mailroom status MESSAGE-ID                       the state of a queued message
  mailroom cancel MESSAGE-ID                       cancel a QUEUED or DEFERRED message
  mailroom watch [--after CURSOR]                  every state change of your queued messages, one JSON line each
  mailroom send-code --email ADDR
  mailroom validate-code --email ADDR --code DIGITS
  mailroom suppress add ADDR | remove ADDR | get ADDR | list
                                                   the suppression list (a token marked admin; docs/bounces.md)
common: [--address host:port] [--deadline-ms N] [--token TOKEN] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
  --address defaults to MAILROOM_ADDRESS, else localhost:40700; --token to MAILROOM_TOKEN.
  With --tls-ca (or a client certificate) the connection uses TLS.
exit codes: 0 success; 1 the call failed or the code is not valid; 2 usage error
`;

const OPTIONS = {
  address: { type: 'string' },
  'deadline-ms': { type: 'string', default: '30000' },
  token: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  to: { type: 'string', default: '' },
  subject: { type: 'string', default: '' },
  body: { type: 'string' },
  'body-file': { type: 'string' },
  html: { type: 'string' },
  'html-file': { type: 'string' },
  cc: { type: 'string', multiple: true, default: [] as string[] },
  bcc: { type: 'string', multiple: true, default: [] as string[] },
  'reply-to': { type: 'string', default: '' },
  'idempotency-key': { type: 'string', default: '' },
  email: { type: 'string', default: '' },
  code: { type: 'string', default: '' },
  attach: { type: 'string', multiple: true, default: [] as string[] },
  inline: { type: 'string', multiple: true, default: [] as string[] },
  header: { type: 'string', multiple: true, default: [] as string[] },
  'list-unsubscribe': { type: 'string', default: '' },
  queued: { type: 'boolean', default: false },
  'send-at': { type: 'string' },
  after: { type: 'string', default: '' },
  repeat: { type: 'string', default: '1' },
  concurrency: { type: 'string', default: '1' },
  help: { type: 'boolean', default: false },
} satisfies NonNullable<ParseArgsConfig['options']>;

/** The parsed options, typed from OPTIONS by parseArgs itself. */
type Values = ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** A whole number option of at least 1. */
function count(values: Values, name: 'repeat' | 'concurrency' | 'deadline-ms'): number {
  const raw = values[name];
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`--${name}: expected a whole number of at least 1, got ${JSON.stringify(raw)}`);
  return n;
}

/** A text given inline or as a file ('-': standard input); not both. */
function text(values: Values, inline: 'body' | 'html', file: 'body-file' | 'html-file'): string {
  const given = values[inline];
  const path = values[file];
  if (given !== undefined && path !== undefined) throw new UsageError(`--${inline} and --${file}: give one of them`);
  if (path === undefined) return given ?? '';
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (err) {
    throw new UsageError(`--${file} ${path}: ${(err as Error).message}`);
  }
}

function required(values: Values, names: readonly ('to' | 'subject' | 'email' | 'code')[]): void {
  const missing = names.filter((n) => values[n] === '');
  if (missing.length > 0) throw new UsageError(`missing ${missing.map((n) => `--${n}`).join(', ')}`);
}

/**
 * The token, checked before anything else uses it: a token is printable
 * ASCII without spaces (as in AUTH_TOKENS_FILE). Metadata would refuse one
 * with a line break by quoting it whole; this says what is wrong, never what
 * the value is.
 */
function bearerToken(option: string | undefined, env: string | undefined): string | undefined {
  const token = option ?? env;
  if (token === undefined || token === '') return undefined;
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new UsageError(`${option !== undefined ? '--token' : 'MAILROOM_TOKEN'}: expected printable ASCII without spaces or line breaks (the value is not shown)`);
  }
  return token;
}

async function main(argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values: Values = parsed.values;
  const { positionals } = parsed;
  const [command, ...extra] = positionals;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === undefined) throw new UsageError('no command');
  const takesId = command === 'status' || command === 'cancel';
  if (takesId && extra.length !== 1) throw new UsageError(`${command}: give one MESSAGE-ID (as send printed it, angle brackets included)`);
  if (!takesId && command !== 'suppress' && extra.length > 0) throw new UsageError(`unexpected ${JSON.stringify(extra.join(' '))}`);
  const token = bearerToken(values.token, process.env.MAILROOM_TOKEN);
  const deadlineMs = count(values, 'deadline-ms');
  const address = values.address ?? process.env.MAILROOM_ADDRESS ?? 'localhost:40700';
  const credentials = channelCredentials({ ca: values['tls-ca'], cert: values['tls-cert'], key: values['tls-key'] });
  const metadata = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    if (token !== undefined && token !== '') m.set('authorization', `Bearer ${token}`);
    return m;
  };
  const proto = loadMailProto();
  const call: CallUnary = <Req, Res>(fn: Unary<Req, Res>, req: Req): Promise<Res> =>
    new Promise((resolve, reject) => fn(req, metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res))));
  const out = (value: unknown): void => {
    process.stdout.write(`${JSON.stringify(toProtoJson(value), null, 2)}\n`);
  };

  switch (command) {
    case 'send': {
      required(values, ['to', 'subject']);
      const sendAt = values['send-at'];
      if (sendAt !== undefined && !values.queued) throw new UsageError('--send-at: only with --queued');
      const at = sendAt === undefined ? undefined : Date.parse(sendAt);
      if (at !== undefined && !Number.isFinite(at)) throw new UsageError(`--send-at: expected an ISO-8601 time, e.g. 2026-12-24T09:00:00Z, got ${JSON.stringify(sendAt)}`);
      const request: SendEmailRequest = {
        ...(values.queued ? { delivery: 'DELIVERY_QUEUED' as const } : {}),
        ...(at !== undefined ? { send_at: { seconds: String(Math.floor(at / 1000)), nanos: (at % 1000) * 1e6 } } : {}),
        to: values.to,
        subject: values.subject,
        body: text(values, 'body', 'body-file'),
        html: text(values, 'html', 'html-file'),
        cc: values.cc,
        bcc: values.bcc,
        reply_to: values['reply-to'],
        idempotency_key: values['idempotency-key'],
        attachments: attachmentsFrom(values.attach, values.inline),
        headers: headersFrom(values.header),
        list_unsubscribe: values['list-unsubscribe'],
      };
      const repeat = count(values, 'repeat');
      const concurrency = count(values, 'concurrency');
      const client = new proto.mail.MailService(address, credentials);
      try {
        if (repeat === 1) {
          out(await call(client.SendMail.bind(client), request));
          return 0;
        }
        return await loop(() => call(client.SendMail.bind(client), request), repeat, concurrency, out);
      } finally {
        client.close();
      }
    }
    case 'status':
    case 'cancel': {
      const client = new proto.mail.MailService(address, credentials);
      try {
        const id = extra[0] as string;
        out(await call(command === 'status' ? client.GetMessage.bind(client) : client.CancelMessage.bind(client), { message_id: id }));
        return 0;
      } finally {
        client.close();
      }
    }
    case 'watch': {
      const client = new proto.mail.MailService(address, credentials);
      const stream = client.WatchMessages({ after: values.after }, metadata());
      process.once('SIGINT', () => stream.cancel());
      return await new Promise<number>((resolve, reject) => {
        stream.once('metadata', () => process.stderr.write(`watching ${values.after === '' ? 'from now' : `after ${values.after}`}; ^C stops\n`));
        stream.on('data', (event: unknown) => process.stdout.write(`${JSON.stringify(toProtoJson(event))}\n`));
        stream.on('end', () => resolve(0));
        stream.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve(0) : reject(err)));
      }).finally(() => client.close());
    }
    case 'send-code': {
      required(values, ['email']);
      const client = new proto.mail.OtpService(address, credentials);
      try {
        out(await call(client.SendCode.bind(client), { email: values.email }));
        return 0;
      } finally {
        client.close();
      }
    }
    case 'validate-code': {
      required(values, ['email', 'code']);
      const client = new proto.mail.OtpService(address, credentials);
      try {
        const reply = await call<ValidateCodeRequest, ValidateCodeResponse__Output>(client.ValidateCode.bind(client), { email: values.email, otpCode: values.code });
        out(reply);
        return reply?.isValid === true ? 0 : 1;
      } finally {
        client.close();
      }
    }
    case 'suppress': {
      const client = new proto.mail.SuppressionService(address, credentials);
      try {
        return await suppress(client, extra, call, out, (v) => process.stdout.write(`${JSON.stringify(toProtoJson(v))}\n`));
      } finally {
        client.close();
      }
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

/** A quick load loop: N calls, C in flight, then a one-line summary. */
async function loop(send: () => Promise<unknown>, repeat: number, concurrency: number, out: (v: unknown) => void): Promise<number> {
  let next = 0;
  let ok = 0;
  const errors = new Map<string, number>();
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < repeat) {
      next++;
      try {
        await send();
        ok++;
      } catch (err) {
        const name = grpc.status[(err as grpc.ServiceError).code] ?? 'ERROR';
        errors.set(name, (errors.get(name) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  out({ calls: repeat, ok, errors: Object.fromEntries(errors), seconds: Number(seconds.toFixed(3)), perSecond: Math.round(ok / seconds) });
  return ok === repeat ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`mailroom: ${err.message}\n${USAGE}`);
      process.exit(2);
    }
    printFailure(err);
    process.exit(1);
  },
);
