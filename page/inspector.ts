// The inspector page: live actors and their states on their charts, the
// event log (filter, pause), a selected actor's redacted context, each
// connection's time per state and last SMTP codes, and the replay of an
// exported recording, step by step. Live records arrive over /stream
// (Server-Sent Events, a batch every 100 ms); a recording is the JSONL of
// /events.jsonl, loaded from a file.
import type { ActorInfo, Hello, InspectRecord, Redacted, StateValue } from '../src/inspect/protocol.js';

interface Actor {
  info: { -readonly [K in keyof ActorInfo]: ActorInfo[K] };
  /** state path entered, and when: the timeline's current segment */
  since: number;
  durations: Map<string, number>;
  codes: number[];
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const LOG_ROWS = 500;
const COLORS = ['#0a7a55', '#1a4d8f', '#b54708', '#7a2e8e', '#6b7280', '#c11574', '#0e7090', '#4e5ba6', '#99700a', '#b42318'];

const actors = new Map<string, Actor>();
/** queued messages seen, by Message-ID, each with its records oldest first; the most recent last in the map */
const messages = new Map<string, InspectRecord[]>();
const MESSAGES_KEPT = 500;
let selectedMessage: string | undefined;
const charts = new Map<string, Promise<SVGSVGElement | undefined>>();
/** the machines the live inspector named: a recording may only ask for these charts */
const knownMachines = new Set<string>();
let selected = 'supervisor';
let paused = false;
let live: EventSource | undefined;
let replay: { records: InspectRecord[]; header: ActorInfo[]; at: number } | undefined;

/** "authenticated.idle" for { authenticated: 'idle' }. */
function statePath(value: StateValue | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([k, v]) => `${k}.${statePath(v)}`)
    .join(', ');
}

/** The ids of every active state node, "machine.a.b" and its ancestors, as the chart's data-state names them. */
function activeIds(machine: string, value: StateValue | undefined, prefix = machine): string[] {
  if (value === undefined) return [machine];
  if (typeof value === 'string') return [prefix, `${prefix}.${value}`];
  return [prefix, ...Object.entries(value).flatMap(([k, v]) => activeIds(machine, v, `${prefix}.${k}`))];
}

function text(tag: string, content: string, className?: string): HTMLElement {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className !== undefined) el.className = className;
  return el;
}

function reset(infos: readonly ActorInfo[], now: number): void {
  actors.clear();
  messages.clear();
  for (const info of infos) actors.set(info.actor, { info: { ...info }, since: now, durations: new Map(), codes: [] });
  $('log').querySelector('tbody')?.replaceChildren();
}

/** A redacted value's fields, when it is an object. */
function fields(value: Redacted | undefined): { readonly [key: string]: Redacted } | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
}

/** The SMTP code an event carries: a delivery's reply, or a refusal's. */
function smtpCode(data: Redacted | undefined): number | undefined {
  const event = fields(data);
  const replied = fields(event?.reply)?.code;
  if (typeof replied === 'number') return replied;
  const refused = fields(fields(event?.error)?.smtp)?.code;
  return typeof refused === 'number' ? refused : undefined;
}

/** A message changed state: its life gains a record; it becomes the most recent. */
function noteMessage(r: InspectRecord): void {
  if (r.message === undefined) return;
  const life = messages.get(r.message) ?? [];
  messages.delete(r.message);
  life.push(r);
  messages.set(r.message, life);
  if (messages.size > MESSAGES_KEPT) messages.delete(messages.keys().next().value as string);
}

function apply(r: InspectRecord): void {
  if (r.kind === 'message') {
    noteMessage(r);
    return;
  }
  if (r.kind === 'actor') {
    actors.set(r.actor, { info: { actor: r.actor, parent: r.parent, machine: r.machine, state: r.to }, since: r.t, durations: new Map(), codes: [] });
  } else if (r.kind === 'stop') {
    actors.delete(r.actor);
  } else if (r.kind === 'step') {
    const a = actors.get(r.actor);
    if (a !== undefined) {
      const was = statePath(a.info.state);
      a.durations.set(was, (a.durations.get(was) ?? 0) + Math.max(0, r.t - a.since));
      a.since = r.t;
      a.info.state = r.to;
      const code = smtpCode(r.data);
      if (code !== undefined) a.codes = [...a.codes.slice(-4), code];
    }
  }
  if (r.kind === 'step' || r.kind === 'event') logRow(r);
}

function logRow(r: InspectRecord): void {
  if (paused) return;
  const filter = ($('filter') as HTMLSelectElement).value;
  if (filter !== '' && r.actor !== filter && !r.actor.startsWith(`${filter}/`)) return;
  const body = $('log').querySelector('tbody') as HTMLTableSectionElement;
  const row = document.createElement('tr');
  row.dataset.seq = String(r.seq);
  const move = r.kind === 'step' ? `${statePath(r.from)} → ${statePath(r.to)}` : '';
  row.append(text('td', new Date(r.t).toISOString().slice(11, 23)), text('td', r.actor), text('td', r.type ?? ''), text('td', move), text('td', r.data === undefined ? '' : JSON.stringify(r.data), 'data'));
  body.prepend(row);
  while (body.rows.length > LOG_ROWS) body.deleteRow(body.rows.length - 1);
  $('log-count').textContent = `${body.rows.length} shown`;
}

function renderActors(): void {
  const list = $('actor-list');
  const rows: HTMLElement[] = [];
  const sorted = [...actors.values()].sort((a, b) => a.info.actor.localeCompare(b.info.actor, undefined, { numeric: true }));
  for (const a of sorted) {
    const li = document.createElement('li');
    li.dataset.actor = a.info.actor;
    li.dataset.state = statePath(a.info.state);
    if (a.info.machine === undefined) li.className = 'child';
    if (a.info.actor === selected) li.classList.add('selected');
    li.style.paddingLeft = `${6 + 14 * (a.info.actor.split('/').length - 1)}px`;
    li.append(text('span', a.info.actor.split('/').slice(-1)[0] ?? a.info.actor, 'name'), text('span', statePath(a.info.state), 'state'));
    if (a.info.machine !== undefined) li.addEventListener('click', () => select(a.info.actor));
    rows.push(li);
  }
  list.replaceChildren(...rows);
  const filter = $('filter') as HTMLSelectElement;
  const known = new Set([...filter.options].map((o) => o.value));
  for (const a of sorted) {
    if (a.info.machine === undefined || known.has(a.info.actor)) continue;
    const option = document.createElement('option');
    option.value = a.info.actor;
    option.textContent = a.info.actor;
    filter.append(option);
  }
}

/**
 * A chart as an SVG element, parsed as SVG (never as HTML): only a machine
 * the live inspector named, its name encoded, so a recording cannot point
 * the fetch elsewhere; scripts, foreign content and event handlers are
 * dropped, should a chart ever hold any.
 */
function loadChart(machine: string): Promise<SVGSVGElement | undefined> {
  if (!knownMachines.has(machine)) return Promise.resolve(undefined);
  return fetch(`/charts/${encodeURIComponent(machine)}.svg`)
    .then((r) => (r.ok && (r.headers.get('content-type') ?? '').startsWith('image/svg+xml') ? r.text() : ''))
    .then((text) => {
      const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
      const root = doc.documentElement;
      if (!(root instanceof SVGSVGElement)) return undefined;
      for (const bad of root.querySelectorAll('script, foreignObject')) bad.remove();
      for (const el of [root, ...root.querySelectorAll('*')]) {
        for (const attr of [...el.attributes]) if (/^on/i.test(attr.name) || /^\s*javascript:/i.test(attr.value)) el.removeAttribute(attr.name);
      }
      return document.importNode(root, true);
    })
    .catch(() => undefined);
}

async function renderChart(): Promise<void> {
  const a = actors.get(selected);
  const machine = a?.info.machine;
  const holder = $('chart');
  if (a === undefined || machine === undefined) return;
  if (holder.dataset.machine !== machine) {
    let svg = charts.get(machine);
    if (svg === undefined) {
      svg = loadChart(machine);
      charts.set(machine, svg);
    }
    const chart = await svg;
    if (chart === undefined) holder.replaceChildren(text('p', `no chart for ${machine}`));
    else holder.replaceChildren(chart.cloneNode(true));
    holder.dataset.machine = machine;
  }
  $('chart-title').textContent = `${selected} · ${machine}`;
  const active = new Set(activeIds(machine, a.info.state));
  for (const g of holder.querySelectorAll<SVGGElement>('g.state')) g.classList.toggle('active', active.has(g.dataset.state ?? ''));
}

function renderTimelines(): void {
  const now = replay === undefined ? Date.now() : (replay.records[replay.at - 1]?.t ?? Date.now());
  const blocks: HTMLElement[] = [];
  const states = new Set<string>();
  const connections = [...actors.values()].filter((a) => a.info.machine === 'smtpConnection').sort((x, y) => x.info.actor.localeCompare(y.info.actor, undefined, { numeric: true }));
  for (const a of connections) {
    const spans = new Map(a.durations);
    const current = statePath(a.info.state);
    spans.set(current, (spans.get(current) ?? 0) + Math.max(0, now - a.since));
    const total = [...spans.values()].reduce((x, y) => x + y, 0) || 1;
    const block = document.createElement('div');
    block.className = 'timeline';
    block.dataset.actor = a.info.actor;
    block.append(text('div', '', 'name'));
    (block.firstChild as HTMLElement).append(text('span', a.info.actor.split('/').pop() ?? ''), text('span', a.codes.length > 0 ? `SMTP ${a.codes.join(' ')}` : 'no reply yet', 'codes'));
    const bar = document.createElement('div');
    bar.className = 'bar';
    for (const [state, ms] of spans) {
      if (state === '') continue; // before its first state (a recording's start)
      states.add(state);
      const seg = document.createElement('span');
      seg.style.width = `${(100 * ms) / total}%`;
      seg.style.background = COLORS[[...states].indexOf(state) % COLORS.length] ?? '#999';
      seg.title = `${state}: ${(ms / 1000).toFixed(1)} s`;
      bar.append(seg);
    }
    block.append(bar);
    blocks.push(block);
  }
  const legend = document.createElement('div');
  legend.className = 'legend';
  [...states].forEach((s, i) => {
    const item = text('span', s);
    const swatch = document.createElement('i');
    swatch.style.background = COLORS[i % COLORS.length] ?? '#999';
    item.prepend(swatch);
    legend.append(item);
  });
  $('timelines').replaceChildren(...blocks, legend);
}

let contextTimer: number | undefined;
function renderContext(): void {
  $('context-actor').textContent = selected;
  if (replay !== undefined) {
    $('context').textContent = 'a recording holds events, not contexts: see the data column of each step';
    return;
  }
  if (contextTimer !== undefined) return;
  contextTimer = window.setTimeout(() => {
    contextTimer = undefined;
    fetch(`/context?actor=${encodeURIComponent(selected)}`)
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`${r.status}`))))
      .then((ctx: unknown) => {
        $('context').textContent = JSON.stringify(ctx, null, 2);
      })
      .catch(() => {
        $('context').textContent = 'no longer live';
      });
  }, 150);
}

function renderMessages(): void {
  const search = ($('message-search') as HTMLInputElement).value.trim();
  const items: HTMLElement[] = [];
  for (const [id, life] of [...messages].reverse()) {
    if (search !== '' && !id.includes(search)) continue;
    const last = life[life.length - 1] as InspectRecord;
    const li = document.createElement('li');
    li.dataset.message = id;
    li.dataset.state = String(last.to ?? '');
    if (id === selectedMessage) li.className = 'selected';
    li.append(text('span', id), text('span', String(last.to ?? ''), 'state'));
    li.addEventListener('click', () => {
      selectedMessage = id;
      renderMessages();
      void renderMessageChart();
    });
    items.push(li);
    if (items.length >= 200) break;
  }
  $('message-list').replaceChildren(...items);
  $('message-count').textContent = `${messages.size} seen`;
  const life = selectedMessage === undefined ? undefined : messages.get(selectedMessage);
  $('message-title').textContent = selectedMessage ?? 'select a message';
  const rows = (life ?? []).map((r) => {
    const row = document.createElement('tr');
    const data = fields(r.data);
    const reply = data?.reply;
    const code = data?.code;
    // A delivery report after SENT: its kind names the step, its latest bounce is what the relay column shows.
    const bounces: readonly Redacted[] = Array.isArray(data?.bounces) ? data.bounces : [];
    const latest = fields(bounces[bounces.length - 1]);
    const report = r.type !== undefined && r.type !== r.to ? `${String(r.to ?? '')} (${r.type})` : String(r.to ?? '');
    const relay = latest !== undefined && r.type !== r.to ? `${String(latest.kind ?? '')} ${String(latest.status ?? '')} recipient ${String(latest.recipient ?? '')}: ${String(latest.diagnostic ?? '')}` : undefined;
    row.append(
      text('td', new Date(r.t).toISOString().slice(11, 23)),
      text('td', report),
      text('td', String(data?.attempts ?? '')),
      text('td', typeof data?.cid === 'string' ? data.cid : ''),
      text('td', relay ?? [typeof reply === 'string' ? reply : '', typeof code === 'string' && code !== '' ? `(${code})` : ''].join(' ').trim()),
    );
    return row;
  });
  $('message-life').querySelector('tbody')?.replaceChildren(...rows);
}

/** The selected message's state, lit on the message machine's chart. */
async function renderMessageChart(): Promise<void> {
  const life = selectedMessage === undefined ? undefined : messages.get(selectedMessage);
  const last = life?.[life.length - 1];
  if (last?.machine === undefined) return;
  const holder = $('chart');
  if (holder.dataset.machine !== last.machine) {
    const chart = await (charts.get(last.machine) ?? charts.set(last.machine, loadChart(last.machine)).get(last.machine));
    if (chart === undefined) holder.replaceChildren(text('p', `no chart for ${last.machine}`));
    else holder.replaceChildren(chart.cloneNode(true));
    holder.dataset.machine = last.machine;
  }
  $('chart-title').textContent = `${selectedMessage ?? ''} · ${last.machine}`;
  const active = new Set(activeIds(last.machine, last.to));
  for (const g of holder.querySelectorAll<SVGGElement>('g.state')) g.classList.toggle('active', active.has(g.dataset.state ?? ''));
}

function render(): void {
  renderActors();
  if (selectedMessage === undefined) void renderChart();
  else void renderMessageChart();
  renderTimelines();
  renderMessages();
}

function select(actor: string): void {
  selected = actor;
  selectedMessage = undefined;
  render();
  renderContext();
}

function goLive(): void {
  replay = undefined;
  $('replay').hidden = true;
  const mode = $('mode');
  live = new EventSource('/stream');
  live.addEventListener('hello', (e) => {
    const hello = JSON.parse((e as MessageEvent<string>).data) as Hello;
    for (const m of hello.machines) knownMachines.add(m);
    reset(hello.actors, Date.now());
    for (const r of hello.records.filter((r) => r.kind === 'step' || r.kind === 'event').slice(-LOG_ROWS)) logRow(r);
    for (const r of hello.records) if (r.kind === 'message') noteMessage(r);
    mode.textContent = 'live';
    mode.className = '';
    render();
    renderContext();
  });
  live.onmessage = (e: MessageEvent<string>) => {
    const batch = JSON.parse(e.data) as InspectRecord[];
    for (const r of batch) apply(r);
    render();
    if (batch.some((r) => r.actor === selected && r.kind === 'step')) renderContext();
  };
  live.onerror = () => {
    mode.textContent = 'disconnected: retrying';
    mode.className = 'off';
  };
}

/** A recording: its header line (the actors at export), then its records, oldest first. */
function startReplay(textContent: string): void {
  live?.close();
  live = undefined;
  const lines = textContent.split('\n').filter((l) => l.trim() !== '');
  const first = JSON.parse(lines[0] ?? '{}') as { kind?: string; actors?: ActorInfo[] };
  const records = lines.slice(first.kind === 'header' ? 1 : 0).map((l) => JSON.parse(l) as InspectRecord);
  replay = { records, header: first.actors ?? [], at: 0 };
  $('replay').hidden = false;
  $('mode').textContent = 'replay';
  $('mode').className = 'replay';
  seek(0);
}

/** The recording replayed up to `at` records: each actor starts in the state its first step left. */
function seek(at: number): void {
  if (replay === undefined) return;
  replay.at = Math.max(0, Math.min(at, replay.records.length));
  const start = new Map(replay.header.map((a) => [a.actor, { ...a }]));
  for (const r of replay.records) {
    const a = start.get(r.actor);
    if (r.kind === 'step' && a !== undefined && !('seen' in a)) Object.assign(a, { state: r.from, seen: true });
  }
  reset([...start.values()], replay.records[0]?.t ?? 0);
  const wasPaused = paused;
  paused = false;
  for (const r of replay.records.slice(0, replay.at)) apply(r);
  paused = wasPaused;
  const current = replay.records[replay.at - 1];
  $('position').textContent = `${replay.at} / ${replay.records.length}${current !== undefined ? ` · ${current.actor} ${current.type ?? current.kind}` : ''}`;
  if (current !== undefined && current.kind === 'step' && actors.get(current.actor)?.info.machine !== undefined) {
    selected = current.actor;
    selectedMessage = undefined;
  }
  if (current?.kind === 'message') selectedMessage = current.message;
  render();
  renderContext();
  $('log').querySelector('tbody')?.rows[0]?.classList.add('current');
}

$('message-search').addEventListener('input', renderMessages);
$('pause').addEventListener('click', () => {
  paused = !paused;
  $('pause').textContent = paused ? 'resume' : 'pause';
});
$('filter').addEventListener('change', () => $('log').querySelector('tbody')?.replaceChildren());
$('step').addEventListener('click', () => seek((replay?.at ?? 0) + 1));
$('back').addEventListener('click', () => seek((replay?.at ?? 1) - 1));
$('live').addEventListener('click', goLive);
$('load').addEventListener('change', () => {
  const file = ($('load') as HTMLInputElement).files?.[0];
  if (file !== undefined) void file.text().then(startReplay);
});
window.setInterval(() => {
  if (replay === undefined) renderTimelines();
}, 1000);

goLive();
