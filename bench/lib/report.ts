/**
 * What a benchmark section hands back, and its markdown. Every number in the markdown comes
 * from a measurement of this run.
 *
 * @module
 */
import { type CaseResult, ratioOf } from './measure.ts';

export interface Table {
  title: string;
  columns: string[];
  rows: string[][];
}

/** A target from the issues, with what this run measured. `met` undefined: not decidable. */
export interface Check {
  target: string;
  actual: string;
  met: boolean | undefined;
}

export interface SectionResult {
  /** Marker id in docs/BENCHMARKS.md: `<!-- bench:<id> -->`. */
  id: string;
  title: string;
  /** Set when the section did not run, with the reason. */
  skipped?: string;
  /** Services and library versions the section ran against. */
  facts: string[];
  tables: Table[];
  checks: Check[];
  notes: string[];
}

export function emptySection(id: string, title: string): SectionResult {
  return { id, title, facts: [], tables: [], checks: [], notes: [] };
}

export const fmtOps = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');

/** Microseconds, shown as µs below 10 ms and as ms above. */
export const fmtUs = (us: number) => {
  if (!Number.isFinite(us)) return 'n/a';
  if (us < 10_000) return `${us < 100 ? us.toFixed(1) : Math.round(us)} µs`;
  return `${(us / 1000).toFixed(1)} ms`;
};

export const fmtPct = (r: number | undefined) => (r === undefined ? '—' : `${(r * 100).toFixed(1)} %`);

/**
 * A throughput table: one row per case, with its ratio to its baseline (same concurrency).
 *
 * @example
 * section.tables.push(throughputTable('Fresh key', results));
 */
export function throughputTable(title: string, results: CaseResult[], workload?: string): Table {
  const rows = results.map((r) => {
    const ratio = ratioOf(r, results);
    return [
      ...(workload ? [workload] : []),
      String(r.concurrency),
      r.note ? `${r.name} (${r.note})` : r.name,
      fmtOps(r.opsPerSec),
      fmtUs(r.p50Us),
      fmtUs(r.p99Us),
      fmtUs(r.cpuUs),
      ratio === undefined ? '—' : `${fmtPct(ratio)} of ${r.baseline}`,
      r.errors ? `${r.errors} ✗` : '0',
    ];
  });
  return {
    title,
    columns: [
      ...(workload ? ['workload'] : []),
      'callers',
      'implementation',
      'ops/s',
      'p50',
      'p99',
      'client CPU/op',
      'throughput vs baseline',
      'errors',
    ],
    rows,
  };
}

/** Appends rows of `b` to `a` (same columns). */
export function mergeTables(title: string, tables: Table[]): Table {
  return { title, columns: tables[0]?.columns ?? [], rows: tables.flatMap((t) => t.rows) };
}

export function renderTable(t: Table): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  return [
    `**${t.title}**`,
    '',
    `| ${t.columns.map(esc).join(' | ')} |`,
    `|${t.columns.map((c, i) => (i === 0 || c === 'implementation' ? '---' : '---:')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

/** The section as markdown; `level` is the heading level of its title, '' for no title. */
export function renderSection(s: SectionResult, level = '###'): string {
  const out: string[] = level ? [`${level} ${s.title}`, ''] : [];
  if (s.skipped) {
    out.push(`skipped: ${s.skipped}`);
    return out.join('\n');
  }
  if (s.facts.length) out.push(s.facts.map((f) => `- ${f}`).join('\n'), '');
  for (const t of s.tables) out.push(renderTable(t), '');
  if (s.checks.length) {
    out.push('**Targets**', '', '| target | measured | met |', '|---|---|---|');
    for (const c of s.checks) {
      out.push(`| ${c.target} | ${c.actual} | ${c.met === undefined ? 'n/a' : c.met ? 'yes' : '**no**'} |`);
    }
    out.push('');
  }
  if (s.notes.length) out.push(s.notes.map((n) => `- ${n}`).join('\n'), '');
  return out.join('\n').trimEnd();
}
