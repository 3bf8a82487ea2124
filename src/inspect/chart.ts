// A machine's statechart as a drawing, from its definition alone: nested
// states, every transition with its event (a delayed one as "after
// <delay>", an eventless one as "always"), its guard in brackets, the
// transitions that change no state listed inside their state, and what each
// state invokes. Laid out by elkjs (layered, hierarchical) and rendered to
// SVG whose states carry data-state="<state id>", so that the inspector page
// can light up the live state. The same code writes docs/*.svg (npm run
// charts), so the committed charts are exactly what the page draws.
import elkModule from 'elkjs/lib/elk.bundled.js';
import type { ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import type { AnyStateMachine } from 'xstate';

export interface ChartState {
  readonly id: string;
  readonly key: string;
  readonly type: string;
  /** id of the child entered first (compound states) */
  readonly initial: string | undefined;
  readonly children: ChartState[];
  /** transitions that stay in this state (actions only), as "event [guard]" */
  readonly internal: string[];
  /** what the state invokes while it is active */
  readonly invokes: string[];
}

export interface ChartEdge {
  readonly id: string;
  readonly source: string;
  readonly target: string;
  readonly label: string;
}

export interface Chart {
  readonly machine: string;
  readonly root: ChartState;
  readonly edges: ChartEdge[];
}

interface NodeLike {
  readonly id: string;
  readonly key: string;
  readonly type: string;
  readonly states: Readonly<Record<string, NodeLike>>;
  readonly transitions: ReadonlyMap<string, readonly TransitionLike[]>;
  readonly always?: readonly TransitionLike[];
  readonly after: readonly (TransitionLike & { readonly delay: unknown })[];
  readonly initial: { readonly target: readonly NodeLike[] } | undefined;
  readonly invoke: readonly { readonly src: unknown; readonly id: string }[];
}

interface TransitionLike {
  readonly eventType: string;
  readonly target: readonly NodeLike[] | undefined;
  readonly guard?: unknown;
}

function guardName(guard: unknown): string {
  if (guard === undefined) return '';
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard) return String(guard.type);
  if (typeof guard === 'function') return guard.name === '' ? 'guard' : guard.name;
  return 'guard';
}

function label(event: string, guard: unknown): string {
  const g = guardName(guard);
  return g === '' ? event : `${event} [${g}]`;
}

/** How a transition's event reads on the chart: "after backoff", "done: dial", "error: quit", or the event type. */
function eventName(eventType: string, after: { readonly delay: unknown } | undefined, invoked: ReadonlyMap<string, string>): string {
  if (after !== undefined) return `after ${typeof after.delay === 'number' ? `${after.delay} ms` : String(after.delay)}`;
  for (const [prefix, word] of [['xstate.done.actor.', 'done'], ['xstate.error.actor.', 'error']] as const) {
    if (!eventType.startsWith(prefix)) continue;
    const src = invoked.get(eventType.slice(prefix.length));
    if (src !== undefined) return `${word}: ${src}`;
  }
  return eventType;
}

/** The chart model of a machine: its states and the transitions between them. */
export function chartOf(machine: AnyStateMachine): Chart {
  const edges: ChartEdge[] = [];
  const visit = (node: NodeLike): ChartState => {
    const internal: string[] = [];
    const add = (name: string, t: TransitionLike): void => {
      const text = label(name, t.guard);
      if (t.target === undefined || t.target.length === 0) {
        if (!internal.includes(text)) internal.push(text);
        return;
      }
      for (const target of t.target) edges.push({ id: `e${edges.length}`, source: node.id, target: target.id, label: text });
    };
    const delayed = new Map(node.after.map((t) => [t.eventType, t]));
    const invoked = new Map(node.invoke.map((i) => [i.id, typeof i.src === 'string' ? i.src : i.id]));
    for (const [eventType, list] of node.transitions) {
      for (const t of list) add(eventName(eventType, delayed.get(eventType), invoked), t);
    }
    for (const t of node.always ?? []) add('always', t);
    const children = Object.values(node.states).map(visit);
    return {
      id: node.id,
      key: node.key,
      type: node.type,
      initial: node.initial?.target[0]?.id,
      children,
      internal,
      invokes: node.invoke.map((i) => (typeof i.src === 'string' ? i.src : i.id)),
    };
  };
  const root = visit(machine.root as unknown as NodeLike);
  return { machine: machine.id, root, edges };
}

// elkjs is CommonJS whose typings declare a default export; at run time the module is the constructor itself and also carries it as `default`.
const ELK = elkModule.default;

const CHAR = 7.2;
const LINE = 16;
const PAD = 12;
const round = (n: number): number => Math.round(n * 10) / 10;
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function lines(state: ChartState): string[] {
  return [...state.invokes.map((i) => `invoke ${i}`), ...state.internal];
}

function elkNode(state: ChartState): ElkNode {
  const body = lines(state);
  const width = Math.max(state.key.length * CHAR + 2 * PAD, ...body.map((l) => l.length * CHAR * 0.92 + 2 * PAD), 60);
  if (state.children.length === 0) {
    return { id: state.id, width: round(width), height: LINE + PAD + body.length * (LINE - 2) + PAD };
  }
  const children = state.children.map(elkNode);
  if (state.initial !== undefined) children.unshift({ id: `${state.id}#initial`, width: 10, height: 10 });
  return {
    id: state.id,
    children,
    layoutOptions: { 'elk.padding': `[top=${LINE + PAD + body.length * (LINE - 2) + 6},left=${PAD},bottom=${PAD},right=${PAD}]`, 'elk.nodeSize.minimum': `(${round(width)}, 40)` },
  };
}

/** Lays the chart out (elkjs) and renders it to SVG. */
export async function renderChart(chart: Chart): Promise<string> {
  const elk = new ELK();
  const edges: ElkExtendedEdge[] = chart.edges.map((e) => ({
    id: e.id,
    sources: [e.source],
    targets: [e.target],
    labels: [{ text: e.label, width: round(e.label.length * CHAR * 0.92 + 4), height: 14 }],
  }));
  const initials: ElkExtendedEdge[] = [];
  const collect = (s: ChartState): void => {
    if (s.initial !== undefined) initials.push({ id: `${s.id}#start`, sources: [`${s.id}#initial`], targets: [s.initial] });
    s.children.forEach(collect);
  };
  collect(chart.root);
  const graph: ElkNode = {
    id: '#graph',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'DOWN',
      'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
      'elk.json.shapeCoords': 'ROOT',
      'elk.json.edgeCoords': 'ROOT',
      'elk.layered.spacing.nodeNodeBetweenLayers': '48',
      'elk.spacing.nodeNode': '28',
      'elk.spacing.edgeLabel': '3',
      'elk.edgeLabels.placement': 'CENTER',
      'elk.layered.nodePlacement.strategy': 'BRANDES_KOEPF',
      'elk.padding': '[top=8,left=8,bottom=8,right=8]',
    },
    children: [elkNode(chart.root)],
    edges: [...edges, ...initials],
  };
  const laid = await elk.layout(graph);
  return toSvg(chart, laid);
}

function toSvg(chart: Chart, laid: ElkNode): string {
  const byId = new Map<string, ChartState>();
  const index = (s: ChartState): void => {
    byId.set(s.id, s);
    s.children.forEach(index);
  };
  index(chart.root);
  const out: string[] = [];
  const drawNode = (n: ElkNode): void => {
    const x = round(n.x ?? 0);
    const y = round(n.y ?? 0);
    const w = round(n.width ?? 0);
    const h = round(n.height ?? 0);
    if (n.id.endsWith('#initial')) {
      out.push(`<circle class="initial" cx="${round(x + w / 2)}" cy="${round(y + h / 2)}" r="5"/>`);
      return;
    }
    const state = byId.get(n.id);
    if (state === undefined) return;
    const kind = state.children.length > 0 ? 'compound' : state.type === 'final' ? 'final' : 'atomic';
    out.push(`<g class="state ${kind}" data-state="${esc(state.id)}">`);
    out.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" rx="8"/>`);
    if (kind === 'final') out.push(`<rect class="inner" x="${round(x + 3)}" y="${round(y + 3)}" width="${round(w - 6)}" height="${round(h - 6)}" rx="6"/>`);
    out.push(`<text class="name" x="${round(x + PAD)}" y="${round(y + LINE + 2)}">${esc(state.key)}</text>`);
    lines(state).forEach((line, i) => out.push(`<text class="note" x="${round(x + PAD)}" y="${round(y + LINE + 2 + (i + 1) * (LINE - 2))}">${esc(line)}</text>`));
    out.push('</g>');
    for (const child of n.children ?? []) drawNode(child);
  };
  for (const child of laid.children ?? []) drawNode(child);
  for (const e of (laid.edges ?? []) as ElkExtendedEdge[]) {
    const section = e.sections?.[0];
    if (section === undefined) continue;
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => `${round(p.x)},${round(p.y)}`);
    const initial = e.id.endsWith('#start');
    out.push(`<g class="edge${initial ? ' start' : ''}" data-source="${esc(e.sources[0] ?? '')}" data-target="${esc(e.targets[0] ?? '')}">`);
    out.push(`<polyline points="${points.join(' ')}" marker-end="url(#arrow)"/>`);
    for (const l of e.labels ?? []) {
      out.push(`<text class="label" x="${round((l.x ?? 0) + 2)}" y="${round((l.y ?? 0) + 11)}">${esc(l.text ?? '')}</text>`);
    }
    out.push('</g>');
  }
  const width = round((laid.width ?? 0) + 8);
  const height = round((laid.height ?? 0) + 8);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-machine="${esc(chart.machine)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" font-size="12">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    '<style>.state rect{fill:#fff;stroke:#444;stroke-width:1.2}.state.compound>rect{fill:#f6f7f9}.state .inner{fill:none}.state.active>rect{stroke:#0a7;stroke-width:3}.state.active.atomic>rect,.state.active.final>rect{fill:#dff7ec}.name{font-weight:600;fill:#222}.note{fill:#666;font-size:11px}.edge polyline{fill:none;stroke:#777;stroke-width:1.1}.edge.start polyline{stroke:#333}.label{fill:#1a4d8f;font-size:11px}.initial{fill:#333}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}
