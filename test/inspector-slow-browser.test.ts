// A browser that stops reading the inspector's stream must cost a bounded
// amount of memory: once its unsent bytes pass the limit it is dropped,
// while a browser that keeps reading is not, and the stream goes on. The
// inspector runs here on a bus fed by a real actor, so the stream can be
// flooded in a second instead of by thousands of mails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:http';
import { createActor, setup } from 'xstate';
import { InspectionBus } from '../src/inspect/bus.js';
import { serveInspector } from '../src/inspect/server.js';
import { once, recordingLogger, sleep } from './helpers.js';

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
    await sleep(300);
    assert.ok(reading.bytes() > before, 'the reading browser still gets the stream');
  } finally {
    reading.close();
    stalled.destroy();
    actor.stop();
    await inspector.close();
  }
});
