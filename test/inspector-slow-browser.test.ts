// Browsers that cost the inspector without end are refused or dropped: one
// that stops reading is dropped once its unsent bytes pass the limit (one
// that keeps reading is not); beyond INSPECT_MAX_CLIENTS streams and two
// exports the rest get 503; a page of another origin gets 403; and the
// streams share one subscription, so a batch is serialised once. The
// inspector runs here on a bus fed by a real actor, so the stream can be
// flooded in a second instead of by thousands of mails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { createActor, setup } from 'xstate';
import { InspectionBus } from '../src/inspect/bus.js';
import { serveInspector } from '../src/inspect/server.js';
import { eventually, once, recordingLogger, sleep } from './helpers.js';

const toggle = setup({ types: { events: {} as { type: 'TOGGLE' } } }).createMachine({
  id: 'toggle',
  initial: 'off',
  states: { off: { on: { TOGGLE: 'on' } }, on: { on: { TOGGLE: 'off' } } },
});

/** A browser that asks for the stream and then never reads a byte of it. */
async function stalledBrowser(port: number): Promise<Socket> {
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  sock.write(`GET /stream HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
  sock.pause();
  return sock;
}

/** A browser that reads everything; counts the bytes it gets. */
function readingBrowser(port: number): { bytes: () => number; close: () => void } {
  let bytes = 0;
  const req = request(`http://127.0.0.1:${port}/stream`, (res) => res.on('data', (d: Buffer) => (bytes += d.length)));
  req.on('error', () => undefined);
  req.end();
  return { bytes: () => bytes, close: () => req.destroy() };
}

test('a browser that stops reading is dropped; one that reads keeps its stream', async () => {
  const logs = recordingLogger('warn');
  const bus = new InspectionBus(1000, { showAddresses: false });
  const actor = createActor(toggle, { inspect: bus.inspect }).start();
  const inspector = await serveInspector(bus, 0, logs.logger);
  const stalled = await stalledBrowser(inspector.port);
  const reading = readingBrowser(inspector.port);
  const dropped = (): boolean => logs.entries.some((e) => e.message.includes('fell behind and was dropped'));
  try {
    await sleep(200);
    // ~2 MB of records per 100 ms batch; the stalled socket fills the
    // kernel's buffers (a few MB on loopback) and then the 4 MiB allowance.
    for (let round = 0; round < 60 && !dropped(); round++) {
      for (let i = 0; i < 20_000; i++) actor.send({ type: 'TOGGLE' });
      await sleep(120);
    }
    assert.ok(dropped(), 'the stalled browser was dropped');
    assert.equal(logs.entries.filter((e) => e.message.includes('fell behind')).length, 1, 'only the stalled one');

    // What the stalled browser gets, once it reads again, ends: its stream was closed.
    const closed = once(stalled, 'close');
    stalled.on('error', () => undefined);
    stalled.resume();
    await closed;

    const before = reading.bytes();
    actor.send({ type: 'TOGGLE' });
    await eventually(() => reading.bytes() > before, 10_000, 'the reading browser still gets the stream');
  } finally {
    reading.close();
    stalled.destroy();
    actor.stop();
    await inspector.close();
  }
});

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      res.pause();
      resolve({ status: res.statusCode ?? 0, close: () => req.destroy() });
    });
    req.on('error', (err) => (err.message === 'socket hang up' ? undefined : reject(err)));
    req.end();
  });
}

test('streams beyond INSPECT_MAX_CLIENTS and exports beyond two get 503; a foreign Origin gets 403; streams share one subscription', async () => {
  const bus = new InspectionBus(50_000, { showAddresses: false });
  const actor = createActor(toggle, { inspect: bus.inspect }).start();
  for (let i = 0; i < 40_000; i++) actor.send({ type: 'TOGGLE' }); // an export of a few MB: it is still going out while the next ones ask
  const inspector = await serveInspector(bus, 0, recordingLogger('warn').logger, { maxClients: 3 });
  const open: { close: () => void }[] = [];
  try {
    for (const path of ['/stream', '/events.jsonl', '/']) {
      assert.equal((await get(inspector.port, path, { origin: 'http://evil.example' })).status, 403, `${path} from another origin`);
    }
    assert.equal((await get(inspector.port, '/', { origin: `http://127.0.0.1:${inspector.port}` })).status, 200, 'its own page');
    const streams = [];
    for (let i = 0; i < 4; i++) streams.push(await get(inspector.port, '/stream'));
    open.push(...streams);
    assert.deepEqual(streams.map((s) => s.status), [200, 200, 200, 503]);
    assert.equal(bus.subscribers, 1, 'three streams, one subscription: each batch is serialised once');
    const exports = [];
    for (let i = 0; i < 3; i++) exports.push(await get(inspector.port, '/events.jsonl'));
    open.push(...exports);
    assert.deepEqual(exports.map((s) => s.status), [200, 200, 503], 'two exports at once');
    for (const s of open) s.close();
    await eventually(() => bus.subscribers === 0, 10_000, 'the last stream gone, the subscription goes');
    assert.equal((await get(inspector.port, '/stream')).status, 200, 'room again');
  } finally {
    for (const s of open) s.close();
    actor.stop();
    await inspector.close();
  }
});
