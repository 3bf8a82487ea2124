// The inspector page in a real browser (Debian's chromium, driven by
// playwright-core): five connections authenticated; the relay stopped,
// they go reconnecting, and come back when it returns; an actor's context,
// redacted; an exported recording loaded and stepped through. Screenshots
// go to test-output/ for people to look at; nothing is compared by pixel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { relayEnv, sendMail, startService, startSmtp, type RunningService, type SmtpPeer } from './helpers.js';
import { queue, until } from './outbox-client.js';

const CHROMIUM = '/usr/bin/chromium';
const OUT = new URL('../../test-output/', import.meta.url);
const PASSWORD = 'pw-MARKER-browser';
/** what a hostile relay answers a recipient: markup that must stay text */
const HOSTILE_REPLY = '5.1.1 <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
const relayOptions = {
  auth: { user: 'mailer', pass: PASSWORD },
  extra: {
    onRcptTo(address: { address: string }, _session: unknown, cb: (err?: Error | null) => void) {
      if (address.address.startsWith('hostile')) cb(Object.assign(new Error(HOSTILE_REPLY), { responseCode: 550 }));
      else cb();
    },
  },
};
let smtp: SmtpPeer;
let svc: RunningService;
let browser: Browser;
let page: Page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  mkdirSync(OUT, { recursive: true });
  smtp = await startSmtp(relayOptions);
  svc = await startService(
    relayEnv(smtp.port, { WORKERS: '5', EMAIL: 'mailer', APP_PASSWORD: PASSWORD, INSPECT_PORT: '0', SMTP_BACKOFF_BASE_MS: '100', SMTP_BACKOFF_MAX_MS: '300', SMTP_KEEPALIVE_MS: '60000' }),
  );
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
  // The page's CSP forbids eval; the test's predicates are evaluated by the driver, not by the page.
  page = await browser.newPage({ viewport: { width: 1600, height: 1100 }, bypassCSP: true });
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`));
  await page.goto(`http://127.0.0.1:${svc.service.inspectPort}/`);
});

after(async () => {
  await browser?.close();
  await svc?.close();
  await smtp?.close();
});

const shot = (name: string): Promise<Buffer> => page.screenshot({ path: new URL(`inspector-${name}.png`, OUT).pathname, timeout: 15_000 });

// Page-side predicates are strings: this file compiles for Node, without the DOM's types.
const FIVE_AUTHENTICATED = `document.querySelectorAll('#actor-list li[data-state^="authenticated."]').length === 5`;

/** The state each connection shows in the actor list. */
async function connectionStates(): Promise<string[]> {
  const items = await page.$$('#actor-list li[data-actor^="supervisor/c"]');
  const states: string[] = [];
  for (const li of items) {
    if (/^supervisor\/c\d+$/.test((await li.getAttribute('data-actor')) ?? '')) states.push((await li.getAttribute('data-state')) ?? '');
  }
  return states;
}

test('the page shows five connections authenticated, each on its chart', async () => {
  await page.waitForFunction(FIVE_AUTHENTICATED, undefined, { timeout: 10_000 });
  assert.deepEqual((await connectionStates()).map((s) => s.split('.')[0]), Array(5).fill('authenticated'));
  await page.click('#actor-list li[data-actor="supervisor/c3"]');
  await page.waitForSelector('#chart svg[data-machine="smtpConnection"] g.state.active[data-state="smtpConnection.authenticated"]');
  await sendMail(svc, { to: 'watch@example.com', subject: 'seen', body: 'b' });
  await page.waitForFunction("[...document.querySelectorAll('#log tbody td')].some((td) => td.textContent === 'SENT')", undefined, { timeout: 5000 });
  // The connection that sent it shows the relay's reply code on its timeline.
  await page.waitForFunction("/SMTP (\\d+ )*250/.test(document.getElementById('timelines').textContent)", undefined, { timeout: 5000 });
  await shot('live');
});

test('the relay stopped: the connections go reconnecting; back, they authenticate again', async () => {
  const port = smtp.port;
  await smtp.close();
  await page.waitForFunction(
    "[...document.querySelectorAll('#actor-list li')].filter((li) => /^supervisor\\/c\\d+$/.test(li.dataset.actor) && /^(reconnecting|connecting)/.test(li.dataset.state)).length === 5",
    undefined,
    { timeout: 15_000 },
  );
  await shot('relay-down');
  smtp = await startSmtp({ port, ...relayOptions });
  await page.waitForFunction(FIVE_AUTHENTICATED, undefined, { timeout: 15_000 });
  const timeline = await page.textContent('#timelines');
  assert.match(timeline ?? '', /reconnecting/);
  await shot('relay-back');
});

test('a selected actor shows its context, redacted', async () => {
  await page.click('#actor-list li[data-actor="supervisor/c1"]');
  await page.waitForFunction(`document.getElementById('context').textContent.includes('"cid": "c1"')`, undefined, { timeout: 5000 });
  const context = (await page.textContent('#context')) ?? '';
  assert.match(context, /"maxMessagesPerConnection"/);
  assert.ok(!context.includes(PASSWORD) && !context.includes('"password"') && !context.includes('"user"'), 'no credentials');
  await shot('context');
});

test('an exported recording loads and steps through, record by record', async () => {
  const exported = await (await fetch(`http://127.0.0.1:${svc.service.inspectPort}/events.jsonl`)).text();
  const file = new URL('inspector-recording.jsonl', OUT).pathname;
  writeFileSync(file, exported);
  const total = exported.trim().split('\n').length - 1;
  await page.setInputFiles('#load', file);
  await page.waitForSelector('#mode.replay');
  assert.equal(await page.textContent('#position'), `0 / ${total}`);
  for (let i = 0; i < 25; i++) await page.click('#step');
  assert.match((await page.textContent('#position')) ?? '', new RegExp(`^25 / ${total}`));
  await page.click('#back');
  assert.match((await page.textContent('#position')) ?? '', new RegExp(`^24 / ${total}`));
  assert.ok((await page.$$('#log tbody tr')).length > 0, 'the log shows the steps replayed so far');
  await shot('replay');
  await page.click('#live');
  await page.waitForFunction("document.getElementById('mode').textContent === 'live'", undefined, { timeout: 5000 });
});

test('the Messages panel lists queued messages, finds one by its id, and shows its life: each state, attempts, connection and reply, on the message chart', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await queue(svc, { to: `watch${i}@example.com`, subject: `panel ${i}`, body: 'b' })).message_id);
  const refused = (await queue(svc, { to: 'hostile@example.com', subject: 'panel refused', body: 'b' })).message_id;
  await until(svc, refused, 'MESSAGE_STATE_FAILED');
  await page.waitForFunction(`document.querySelectorAll('#message-list li').length >= 4`, undefined, { timeout: 5000 });
  const target = ids[1] as string;
  await page.fill('#message-search', target.slice(1, 20));
  await page.waitForFunction(`document.querySelectorAll('#message-list li').length === 1`, undefined, { timeout: 5000 });
  await page.click('#message-list li');
  await page.waitForFunction(`document.getElementById('message-title').textContent.includes(${JSON.stringify(target)})`, undefined, { timeout: 5000 });
  const life = await page.$$eval('#message-life tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  assert.deepEqual(life.map((r) => r[1]), ['queued', 'sending', 'sent']);
  const sent = life[2] ?? [];
  assert.equal(sent[2], '1', 'one attempt');
  assert.match(sent[3] ?? '', /^c\d$/, 'the connection that carried it');
  assert.match(sent[4] ?? '', /^250 /, "the relay's reply");
  await page.waitForSelector('#chart svg[data-machine="message"] g.state.active[data-state="message.sent"]');
  // The refused one: its reply is there, masked, and its catalogue code.
  await page.fill('#message-search', refused.slice(1, 20));
  await page.click('#message-list li');
  await page.waitForFunction(`[...document.querySelectorAll('#message-life td')].some((td) => td.textContent.includes('ERECIPIENT'))`, undefined, { timeout: 5000 });
  const text = (await page.textContent('#message-life')) ?? '';
  assert.ok(!text.includes('hostile@example.com'), 'addresses masked');
  await shot('messages');
  await page.fill('#message-search', '');
});

test('hostile relay text is shown as text: no element it names is made, no script it holds runs', async () => {
  await sendMail(svc, { to: 'hostile@example.com', subject: 'refused', body: 'b' }).catch(() => undefined);
  await page.waitForFunction("[...document.querySelectorAll('#log tbody td.data')].some((td) => td.textContent.includes('onerror'))", undefined, { timeout: 5000 });
  assert.equal(await page.evaluate('window.__pwned'), undefined);
  assert.equal((await page.$$('#log img, #log script')).length, 0, 'the reply became no element');
  await shot('hostile-relay');
});

test('a hostile recording: it cannot choose what the page fetches, and nothing in it runs', async () => {
  const requested: string[] = [];
  const onRequest = (r: { url(): string }): void => void requested.push(r.url());
  page.on('request', onRequest);
  const evil = '../events.jsonl?';
  const lines = [
    { kind: 'header', exportedAt: new Date().toISOString(), machines: [evil], actors: [{ actor: 'evil', machine: evil, state: 'a' }] },
    { seq: 1, t: Date.now(), kind: 'actor', actor: 'evil/<img src=x onerror="window.__pwned=3">', parent: 'evil', machine: evil, to: 'a' },
    { seq: 2, t: Date.now(), kind: 'step', actor: 'evil', type: '<script>window.__pwned=4</script>', from: 'a', to: '<b>b</b>', data: { reason: '<img src=x onerror="window.__pwned=5">' } },
    { seq: 3, t: Date.now(), kind: 'step', actor: 'evil', type: 'x', from: '<b>b</b>', to: { '<i>': 'c' }, data: { reply: { code: 250 } } },
  ];
  const file = new URL('inspector-hostile.jsonl', OUT).pathname;
  writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n'));
  await page.setInputFiles('#load', file);
  await page.waitForSelector('#mode.replay');
  for (let i = 0; i < 3; i++) await page.click('#step');
  await page.waitForFunction("document.getElementById('chart').textContent.includes('no chart for ../events.jsonl?')", undefined, { timeout: 5000 });
  page.off('request', onRequest);
  assert.deepEqual(requested.filter((u) => !u.includes('/context')), [], 'the recording made the page fetch nothing');
  assert.equal(await page.evaluate('window.__pwned'), undefined);
  assert.equal((await page.$$('main img, main script, #log img, #log script, #log b')).length, 0);
  await shot('hostile-recording');
  await page.click('#live');
  await page.waitForFunction("document.getElementById('mode').textContent === 'live'", undefined, { timeout: 5000 });
});
