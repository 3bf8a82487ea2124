// A command-line client for trying the service by hand:
//   npm run client -- send --to a@example.com --subject hi --body text
//   npm run client -- send-code --email a@example.com
//   npm run client -- validate-code --email a@example.com --code 123456
// Options: --address host:port (default localhost:40700 or MAILROOM_ADDRESS),
// --deadline-ms N, --repeat N and --concurrency N (send only: a quick load loop).
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadMailProto } from '../rpc/proto.js';
import type { SendEmailRequest } from '../generated/mail/SendEmailRequest.js';

const USAGE = `usage:
  npm run client -- send --to ADDR --subject TEXT --body TEXT [--html HTML] [--cc ADDR]... [--bcc ADDR]...
                         [--reply-to ADDR] [--idempotency-key KEY] [--repeat N] [--concurrency N]
  npm run client -- send-code --email ADDR
  npm run client -- validate-code --email ADDR --code DIGITS
common: [--address host:port] [--deadline-ms N]
`;

/** A bad option is a usage error with the usage, not a parseArgs stack trace. */
function usageError(message: string): never {
  process.stderr.write(`${message}\n${USAGE}`);
  process.exit(1);
}

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        address: { type: 'string', default: process.env.MAILROOM_ADDRESS ?? 'localhost:40700' },
        'deadline-ms': { type: 'string', default: '30000' },
        to: { type: 'string', default: '' },
        subject: { type: 'string', default: '' },
        body: { type: 'string', default: '' },
        html: { type: 'string', default: '' },
        cc: { type: 'string', multiple: true, default: [] },
        bcc: { type: 'string', multiple: true, default: [] },
        'reply-to': { type: 'string', default: '' },
        'idempotency-key': { type: 'string', default: '' },
        email: { type: 'string', default: '' },
        code: { type: 'string', default: '' },
        repeat: { type: 'string', default: '1' },
        concurrency: { type: 'string', default: '1' },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    return usageError((err as Error).message);
  }
}
const { values, positionals } = parse();

/** A whole number option of at least 1; anything else is a usage error, not NaN calls. */
function count(name: 'repeat' | 'concurrency' | 'deadline-ms'): number {
  const raw = values[name];
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) usageError(`--${name}: expected a whole number of at least 1, got ${JSON.stringify(raw)}`);
  return n;
}
const deadlineMs = count('deadline-ms');
const repeat = count('repeat');
const concurrency = count('concurrency');

const out = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

function fail(err: grpc.ServiceError | Error): never {
  const code = 'code' in err && typeof err.code === 'number' ? grpc.status[err.code] : 'ERROR';
  const details = 'details' in err ? err.details : err.message;
  process.stderr.write(`${code}: ${details}\n`);
  process.exit(1);
}

function unary<Req, Res>(
  call: (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call(req, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

const proto = loadMailProto();
const credentials = grpc.credentials.createInsecure();
const [command] = positionals;

if (values.help || command === undefined) {
  process.stdout.write(USAGE);
  process.exit(command === undefined && !values.help ? 1 : 0);
}

try {
  if (command === 'send') {
    const client = new proto.mail.MailService(values.address, credentials);
    const request: SendEmailRequest = {
      to: values.to,
      subject: values.subject,
      body: values.body,
      html: values.html,
      cc: values.cc,
      bcc: values.bcc,
      reply_to: values['reply-to'],
      idempotency_key: values['idempotency-key'],
    };
    if (repeat === 1) {
      out(await unary(client.SendMail.bind(client), request));
    } else {
      // A quick load loop: N calls, C in flight, then a one-line summary.
      let next = 0;
      let ok = 0;
      const errors = new Map<string, number>();
      const started = performance.now();
      const worker = async (): Promise<void> => {
        while (next < repeat) {
          next++;
          try {
            await unary(client.SendMail.bind(client), request);
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
    }
    client.close();
  } else if (command === 'send-code') {
    const client = new proto.mail.OtpService(values.address, credentials);
    out(await unary(client.SendCode.bind(client), { email: values.email }));
    client.close();
  } else if (command === 'validate-code') {
    const client = new proto.mail.OtpService(values.address, credentials);
    out(await unary(client.ValidateCode.bind(client), { email: values.email, otpCode: values.code }));
    client.close();
  } else {
    process.stderr.write(USAGE);
    process.exit(1);
  }
} catch (err) {
  fail(err as grpc.ServiceError);
}
