// Throughput against round trip as an SVG line chart, one line per party and
// the pipelining limit W/RTT dashed: written next to the bench's JSON and
// shown in the README. Log scale: the parties differ by orders of magnitude.
export interface Series {
  readonly label: string;
  readonly points: readonly { x: number; y: number }[];
}

const COLORS = ['#0a7a55', '#12805c', '#1a4d8f', '#7a2e8e', '#b54708', '#b42318', '#6b7280'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function throughputPlot(series: readonly Series[], limit: readonly { x: number; y: number }[]): string {
  const W = 760;
  const H = 420;
  const left = 70;
  const right = 290;
  const top = 20;
  const bottom = 50;
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const ys = [...series.flatMap((s) => s.points.map((p) => p.y)), ...limit.map((p) => p.y)].filter((y) => y > 0 && Number.isFinite(y));
  const lo = 10 ** Math.floor(Math.log10(Math.min(...ys)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  const xMax = Math.max(...xs, 1);
  const px = (x: number): number => left + ((W - left - right) * x) / xMax;
  const py = (y: number): number => H - bottom - ((H - top - bottom) * Math.log10(Math.max(y, lo) / lo)) / Math.log10(hi / lo);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  ];
  for (let d = lo; d <= hi; d *= 10) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${py(d).toFixed(1)}" y2="${py(d).toFixed(1)}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${left - 8}" y="${(py(d) + 4).toFixed(1)}" text-anchor="end" fill="#555">${d.toLocaleString('en')}</text>`);
  }
  for (const x of xs) {
    out.push(`<line x1="${px(x).toFixed(1)}" x2="${px(x).toFixed(1)}" y1="${top}" y2="${H - bottom}" stroke="#f0f1f3"/>`);
    out.push(`<text x="${px(x).toFixed(1)}" y="${H - bottom + 18}" text-anchor="middle" fill="#555">${x} ms</text>`);
  }
  out.push(`<text x="${(left + W - right) / 2}" y="${H - 10}" text-anchor="middle" fill="#333">round trip to the relay</text>`);
  out.push(`<text x="16" y="${(top + H - bottom) / 2}" transform="rotate(-90 16 ${(top + H - bottom) / 2})" text-anchor="middle" fill="#333">mails a second (log)</text>`);
  const line = (points: readonly { x: number; y: number }[]): string => points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
  if (limit.length > 0) out.push(`<polyline points="${line(limit)}" fill="none" stroke="#111" stroke-dasharray="5 4" stroke-width="1.5"/>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] as string;
    out.push(`<polyline points="${line(s.points)}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = top + 16 + i * 20;
    out.push(`<line x1="${W - right + 20}" x2="${W - right + 44}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${W - right + 50}" y="${ly}" fill="#222">${esc(s.label)}</text>`);
  });
  const ly = top + 16 + series.length * 20;
  out.push(`<line x1="${W - right + 20}" x2="${W - right + 44}" y1="${ly - 4}" y2="${ly - 4}" stroke="#111" stroke-dasharray="5 4" stroke-width="1.5"/>`);
  out.push(`<text x="${W - right + 50}" y="${ly}" fill="#222">W/RTT: one round trip a message a connection</text>`);
  out.push('</svg>', '');
  return out.join('\n');
}
