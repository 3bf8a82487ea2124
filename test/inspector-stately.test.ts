// INSPECT=stately: the same redacted events reach a Stately inspector over
// its WebSocket protocol (a real WebSocket server here, standing in for
// @statelyai/inspect's), and nothing secret goes with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';
import { relayEnv, sendMail, sleep, startService, startSmtp, eventually } from './helpers.js';

test('the Stately bridge sends actors, events and snapshots, redacted', async (t) => {
  const received: string[] = [];
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  server.on('connection', (socket) => socket.on('message', (data: Buffer) => received.push(data.toString('utf8'))));
  const { port } = server.address() as { port: number };
  const password = 'pw-MARKER-stately';
  const smtp = await startSmtp({ auth: { user: 'mailer', pass: password } });
  const svc = await startService(relayEnv(smtp.port, { WORKERS: '1', EMAIL: 'mailer', APP_PASSWORD: password, INSPECT: 'stately', INSPECT_STATELY_URL: `ws://127.0.0.1:${port}` }));
  t.after(async () => {
    await svc.close();
    await smtp.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await sendMail(svc, { to: 'stately-reader@example.com', subject: 'bridged', body: 'body-MARKER-stately' });
  await eventually(() => received.some((m) => m.includes('"SENT"')), 5000, 'a SENT event at the Stately inspector');
  const all = received.join('\n');
  assert.match(all, /"type":"@xstate.actor"/);
  assert.match(all, /"type":"@xstate.snapshot"/);
  assert.match(all, /"SENT"/, 'a delivery reached the inspector');
  assert.match(all, /supervisor\/c1/);
  for (const marker of [password, 'body-MARKER-stately', 'stately-reader@example.com']) assert.ok(!all.includes(marker), `sent ${marker}`);
});
