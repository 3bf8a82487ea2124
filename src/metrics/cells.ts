// Counters and histograms whose hot path is a plain number: each label set
// gets a cell once (`cell(labels)`), and a call, a mail or a check adds to
// its cell. prom-client reads the cells only when /metrics is scraped: its
// own inc() and observe() hash their labels on every update, which cost a
// sixth of SendMail's throughput (docs/decisions.md).
import { Counter, Histogram, type CounterConfiguration, type HistogramConfiguration, type LabelValues } from 'prom-client';

export interface CounterCell {
  n: number;
}

export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > (this.bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += value;
    this.count++;
  }
}

const keyOf = (labels: object): string => JSON.stringify(labels);

type Exposed<L extends string> = Awaited<ReturnType<Counter<L>['get']>>;
type Exposition = Awaited<ReturnType<Histogram['get']>>;

export class CounterFamily<L extends string> extends Counter<L> {
  private readonly cells = new Map<string, { labels: LabelValues<L>; cell: CounterCell }>();

  constructor(config: CounterConfiguration<L>) {
    super(config);
  }

  /** The cell of one label set; the same object for the same labels. */
  cell(labels: LabelValues<L> = {}): CounterCell {
    const key = keyOf(labels);
    let entry = this.cells.get(key);
    if (entry === undefined) {
      entry = { labels, cell: { n: 0 } };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  /** A cell for each value of one label, by value: counters over a closed set (outcomes, codes). */
  cellsBy<V extends string>(label: L, values: readonly V[]): Record<V, CounterCell> {
    const out = {} as Record<V, CounterCell>;
    for (const value of values) {
      const labels: LabelValues<L> = {};
      labels[label] = value;
      out[value] = this.cell(labels);
    }
    return out;
  }

  override async get(): Promise<Exposed<L>> {
    const base = await super.get();
    return { ...base, values: [...this.cells.values()].map(({ labels, cell }) => ({ labels, value: cell.n })) };
  }
}

export class HistogramFamily<L extends string> extends Histogram<L> {
  private readonly cells = new Map<string, { labels: LabelValues<L>; cell: HistogramCell }>();
  private readonly bounds: readonly number[];
  private readonly metricName: string;
  private readonly help: string;

  constructor(config: HistogramConfiguration<L> & { buckets: number[] }) {
    super(config);
    this.metricName = config.name;
    this.help = config.help;
    this.bounds = [...config.buckets].sort((a, b) => a - b);
  }

  cell(labels: LabelValues<L> = {}): HistogramCell {
    const key = keyOf(labels);
    let entry = this.cells.get(key);
    if (entry === undefined) {
      entry = { labels, cell: new HistogramCell(this.bounds) };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  // The registry asks a histogram for this, not get() (prom-client 15).
  // Its typings call `type` a numeric enum; at run time it is the string the
  // exposition prints, hence the one cast.
  getForPromString(): Promise<Exposition> {
    const values: { labels: Partial<Record<string, string | number>>; value: number; metricName: string }[] = [];
    for (const { labels, cell } of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i] ?? 0;
        values.push({ labels: { ...labels, le: i < this.bounds.length ? (this.bounds[i] as number) : '+Inf' }, value: cumulative, metricName: `${this.metricName}_bucket` });
      }
      values.push({ labels, value: cell.sum, metricName: `${this.metricName}_sum` });
      values.push({ labels, value: cell.count, metricName: `${this.metricName}_count` });
    }
    return Promise.resolve({ name: this.metricName, help: this.help, type: 'histogram', aggregator: 'sum', values } as unknown as Exposition);
  }

  override get(): Promise<Exposition> {
    return this.getForPromString();
  }
}
