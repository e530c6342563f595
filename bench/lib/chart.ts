/**
 * A small SVG line chart (no dependency): throughput against concurrency, one line per
 * implementation, concurrency on a log₂ axis. Used by the Redis section for
 * docs/bench/redis-throughput.svg.
 *
 * @module
 */

export interface Series {
  name: string;
  /** [x, y] pairs, x > 0. */
  points: [number, number][];
}

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#7f7f7f'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Renders the chart as a standalone SVG document.
 *
 * @example
 * writeFileSync('chart.svg', lineChart({ title: 'fresh keys', xLabel: 'callers', yLabel: 'ops/s', series }));
 */
export function lineChart(o: { title: string; xLabel: string; yLabel: string; series: Series[] }): string {
  const W = 900;
  const H = 420;
  const m = { l: 70, r: 370, t: 40, b: 50 };
  const xs = [...new Set(o.series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const yMax = Math.max(1, ...o.series.flatMap((s) => s.points.map((p) => p[1])));
  const step = 10 ** Math.floor(Math.log10(yMax));
  const top = Math.ceil(yMax / step) * step;
  const lx = (x: number) => Math.log2(x);
  const [x0, x1] = [lx(xs[0] ?? 1), lx(xs.at(-1) ?? 2)];
  const px = (x: number) => m.l + ((lx(x) - x0) / Math.max(1e-9, x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - (y / top) * (H - m.t - m.b);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(o.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - m.r / 2}" y="22" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = (top / 5) * i;
    out.push(
      `<line x1="${m.l}" x2="${W - m.r}" y1="${py(y)}" y2="${py(y)}" stroke="#ddd"/>`,
      `<text x="${m.l - 6}" y="${py(y) + 4}" text-anchor="end">${Math.round(y).toLocaleString('en-US')}</text>`,
    );
  }
  for (const x of xs) {
    out.push(
      `<line x1="${px(x).toFixed(1)}" x2="${px(x).toFixed(1)}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/>`,
      `<text x="${px(x).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle">${x}</text>`,
    );
  }
  out.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/>`);
    for (const [x, y] of s.points)
      out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = m.t + 10 + i * 20;
    out.push(
      `<line x1="${W - m.r + 14}" x2="${W - m.r + 34}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${W - m.r + 40}" y="${ly + 4}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
