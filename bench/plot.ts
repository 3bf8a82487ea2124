// Throughput against round trip as an SVG line chart, one line per party and
// the pipelining limit W/RTT dashed: written next to the bench's JSON and
// shown in the README. Log scale: the parties differ by orders of magnitude.
export interface Series {
  readonly label: string;
  readonly points: readonly { x: number; y: number }[];
}

// mailroom's lines first, dark and distinct; the others after.
const COLORS = ['#0a7a55', '#1a4d8f', '#0ea5a4', '#7a2e8e', '#b54708', '#b42318', '#6b7280', '#a16207'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function throughputPlot(series: readonly Series[], limit: readonly { x: number; y: number }[]): string {
  const W = 760;
  const left = 70;
  const right = 40;
  const top = 20;
  const plotBottom = 360;
  const legendTop = plotBottom + 56;
  const entries = [...series.map((s, i) => ({ label: s.label, color: COLORS[i % COLORS.length] as string, dash: '' })), { label: 'W/RTT: one round trip a message a connection', color: '#111', dash: '5 4' }];
  const rows = Math.ceil(entries.length / 2);
  const H = legendTop + rows * 20 + 10;
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ys = [...series.flatMap((s) => s.points.map((p) => p.y)), ...limit.map((p) => p.y)].filter((y) => y > 0 && Number.isFinite(y));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...ys)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  const xMax = Math.max(...xs, 1);
  const px = (x: number): number => left + ((W - left - right) * x) / xMax;
  const py = (y: number): number => plotBottom - ((plotBottom - top) * Math.log10(Math.max(y, lo) / lo)) / Math.log10(hi / lo);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  ];
  for (let d = lo; d <= hi; d *= 10) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${py(d).toFixed(1)}" y2="${py(d).toFixed(1)}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${left - 8}" y="${(py(d) + 4).toFixed(1)}" text-anchor="end" fill="#555">${d.toLocaleString('en')}</text>`);
  }
  for (const x of xs) {
    out.push(`<line x1="${px(x).toFixed(1)}" x2="${px(x).toFixed(1)}" y1="${top}" y2="${plotBottom}" stroke="#f0f1f3"/>`);
    out.push(`<text x="${px(x).toFixed(1)}" y="${plotBottom + 18}" text-anchor="middle" fill="#555">${x} ms</text>`);
  }
  out.push(`<text x="${(left + W - right) / 2}" y="${plotBottom + 38}" text-anchor="middle" fill="#333">round trip to the relay</text>`);
  out.push(`<text x="16" y="${(top + plotBottom) / 2}" transform="rotate(-90 16 ${(top + plotBottom) / 2})" text-anchor="middle" fill="#333">mails a second (log)</text>`);
  const line = (points: readonly { x: number; y: number }[]): string => points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
  if (limit.length > 0) out.push(`<polyline points="${line(limit)}" fill="none" stroke="#111" stroke-dasharray="5 4" stroke-width="1.5"/>`);
  series.forEach((s, i) => {
    const color = (entries[i] as { color: string }).color;
    out.push(`<polyline points="${line(s.points)}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
  });
  entries.forEach((e, i) => {
    const x = left + (i % 2) * ((W - left) / 2);
    const y = legendTop + Math.floor(i / 2) * 20;
    const dash = e.dash === '' ? '' : ` stroke-dasharray="${e.dash}"`;
    out.push(`<line x1="${x}" x2="${x + 24}" y1="${y - 4}" y2="${y - 4}" stroke="${e.color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${x + 30}" y="${y}" fill="#222">${esc(e.label)}</text>`);
  });
  out.push('</svg>', '');
  return out.join('\n');
}

/** CPU per mail as horizontal bars, one a party, the value written at the end of each: docs/cpu.svg. */
export function barPlot(bars: readonly { label: string; value: number; group: number }[], unit: string): string {
  const W = 760;
  const left = 330;
  const right = 90;
  const top = 20;
  const rowH = 26;
  const H = top + bars.length * rowH + 40;
  const max = Math.max(...bars.map((b) => b.value).filter(Number.isFinite), 1);
  const px = (v: number): number => ((W - left - right) * v) / max;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  ];
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const color = COLORS[b.group % COLORS.length] as string;
    out.push(`<text x="${left - 8}" y="${y + 15}" text-anchor="end" fill="#222">${esc(b.label)}</text>`);
    out.push(`<rect x="${left}" y="${y + 3}" width="${Math.max(1, px(b.value)).toFixed(1)}" height="${rowH - 8}" fill="${color}"/>`);
    out.push(`<text x="${(left + px(b.value) + 6).toFixed(1)}" y="${y + 15}" fill="#333">${Number.isFinite(b.value) ? Math.round(b.value).toLocaleString('en') : '–'} ${esc(unit)}</text>`);
  });
  out.push(`<text x="${left}" y="${H - 12}" fill="#555">server CPU per delivered mail (median of the repetitions), same run</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}
