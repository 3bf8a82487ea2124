// The inspector as a browser sees it, byte for byte: every byte it sends
// (the event stream, the export, contexts, charts) is searched for the
// markers of what must never leave: a password, a message body, an OTP code
// and its hash, and unmasked addresses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { CodeHasher } from '../src/otp/code.js';
import { codeFromMail, eventually, relayEnv, sendCode, sendMail, sleep, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';

const PASSWORD = 'pw-MARKER-8f2a';
const BODY = 'body-MARKER-77c1';
const SECRET = 'otp secret for the inspector test, 32+';
let smtp: SmtpPeer;
let svc: RunningService;
let base: string;

before(async () => {
  smtp = await startSmtp({ auth: { user: 'mailer', pass: PASSWORD }, authMethods: ['PLAIN'] });
  svc = await startService(
    relayEnv(smtp.port, { WORKERS: '2', EMAIL: 'mailer', APP_PASSWORD: PASSWORD, INSPECT_PORT: '0', INSPECT_BUFFER: '200', OTP_SECRET: SECRET, OTP_LENGTH: '8' }),
  );
  base = `http://127.0.0.1:${svc.service.inspectPort}`;
});

after(async () => {
  await svc.close();
  await smtp.close();
});

/** The stream as a browser's EventSource receives it: `hello` once it is live, `stop()` ends it and gives its text. */
function listen(): { hello: Promise<void>; text(): string; stop(): string } {
  let text = '';
  let said = (): void => undefined;
  const hello = new Promise<void>((resolve) => (said = resolve));
  const req = request(`${base}/stream`, (res) => {
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      text += d;
      if (text.includes('event: hello\n')) said();
    });
  });
  req.on('error', () => undefined);
  req.end();
  return {
    hello,
    text: () => text,
    stop() {
      req.destroy();
      return text;
    },
  };
}

test('nothing the inspector sends holds a password, a body, a code, its hash or an unmasked address', async () => {
  const streamed = listen();
  await streamed.hello;
  await sendMail(svc, { to: 'Recipient Person <recipient@example.com>', subject: 'inspected', body: BODY, html: `<p>${BODY}</p>` });
  await sendCode(svc, 'otp-user@example.com');
  const code = await codeFromMail(smtp, 'otp-user@example.com', 8);
  // Both sends and the code's mail seen on the stream, then a moment more for whatever was still batched.
  await eventually(() => (streamed.text().match(/"type":"SENT"/g) ?? []).length >= 2 && streamed.text().includes('"type":"code.send"'), 10_000, 'both sends on the stream');
  await sleep(200);
  const stream = streamed.stop();
  const exported = await (await fetch(`${base}/events.jsonl`)).text();
  const hello = JSON.parse(/event: hello\ndata: (.*)\n/.exec(stream)?.[1] ?? '{}') as { actors: { actor: string }[] };
  const contexts = await Promise.all(hello.actors.map(async (a) => (await fetch(`${base}/context?actor=${encodeURIComponent(a.actor)}`)).text()));
  const charts = await Promise.all(['supervisor', 'smtpConnection', 'otp'].map(async (m) => (await fetch(`${base}/charts/${m}.svg`)).text()));
  const everything = [stream, exported, ...contexts, ...charts].join('\n');

  const hash = new CodeHasher(SECRET).hash('otp-user@example.com', code);
  for (const marker of [PASSWORD, Buffer.from(`\0mailer\0${PASSWORD}`).toString('base64'), BODY, code, hash, Buffer.from(hash, 'latin1').toString('hex'), Buffer.from(hash, 'latin1').toString('base64'), 'recipient@example.com', 'otp-user@example.com', SECRET]) {
    assert.ok(!everything.includes(marker), `the inspector sent ${JSON.stringify(marker.slice(0, 12))}…`);
  }
  assert.match(everything, /o\*\*\*@example\.com/, 'the OTP address appears, masked');
  assert.match(stream, /"type":"code.send"/, 'the OTP actor was seen');
  assert.match(stream, /"type":"SENT"/, 'a connection was seen sending');
  // Batched: a frame holds several records.
  const frames = [...stream.matchAll(/^data: (\[.*\])$/gm)].map((m) => JSON.parse(m[1] as string) as unknown[]);
  assert.ok(frames.some((f) => f.length > 1), 'records travel in batches');
});

test('the export is the ring: a header with the live actors, then at most INSPECT_BUFFER records', async () => {
  for (let i = 0; i < 30; i++) await sendMail(svc, { to: `r${i}@example.com`, subject: 'fill', body: 'b' });
  const lines = (await (await fetch(`${base}/events.jsonl`)).text()).trim().split('\n');
  const header = JSON.parse(lines[0] as string) as { kind: string; actors: { actor: string; machine?: string }[] };
  assert.equal(header.kind, 'header');
  assert.deepEqual(header.actors.filter((a) => a.machine === 'smtpConnection').map((a) => a.actor).sort(), ['supervisor/c1', 'supervisor/c2']);
  assert.equal(lines.length - 1, 200, 'the ring holds the last INSPECT_BUFFER records');
  const seqs = lines.slice(1).map((l) => (JSON.parse(l) as { seq: number }).seq);
  assert.ok(seqs.every((s, i) => i === 0 || s === (seqs[i - 1] as number) + 1), 'in order, none missing');
});

test('the inspector listens on loopback only and answers only for its own host name', async () => {
  const answer = await new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: svc.service.inspectPort, path: '/', headers: { host: 'attacker.example:80' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(answer, 403, 'a DNS-rebinding request is refused');
  const page = await fetch(`${base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  assert.match(await page.text(), /<script type="module" src="\/inspector.js">/);
  assert.equal((await fetch(`${base}/inspector.js`)).status, 200);
});
