/**
 * docs/ops/grafana-idem.json and docs/ops/alerts.yml against the instrument catalogue: every
 * metric a query names exists (a misspelled one fails), every label a query groups or filters
 * by is one of that metric's labels, the dashboard is importable (a Prometheus datasource
 * variable, every panel on it) and covers the seed's metric list, and every alert has a query,
 * a severity and a summary.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  INSTRUMENTS,
  type InstrumentSpec,
  prometheusLabel,
  prometheusName,
} from '../../src/core/instruments.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
const CATALOGUE = new Map<string, InstrumentSpec>(
  Object.values(INSTRUMENTS).map((i) => [prometheusName(i), i]),
);

/** Metric names and labels a PromQL expression uses, checked against the catalogue; answers the metrics. */
function checkQuery(expr: string): string[] {
  const bare = expr.replace(/\b(?:by|without)\s*\([^)]*\)/g, ' ').replace(/\{[^}]*\}/g, ' ');
  const metrics = [...bare.matchAll(/\b(idem_[a-z_]+)/g)].map((m) => m[1]!);
  expect(metrics.length, expr).toBeGreaterThan(0);
  const used: InstrumentSpec[] = [];
  for (const metric of metrics) {
    const base = CATALOGUE.has(metric) ? metric : metric.replace(/_(bucket|sum|count)$/, '');
    const instrument = CATALOGUE.get(base);
    expect(instrument, `${metric} in ${expr}`).toBeDefined();
    if (base !== metric) expect(instrument!.kind, `${metric} is a histogram series`).toBe('histogram');
    used.push(instrument!);
  }
  const labels = new Set(['le', ...used.flatMap((i) => i.attributes.map(prometheusLabel))]);
  const grouped = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    m[1]!.split(',').map((l) => l.trim()),
  );
  const matched = [...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) =>
    [...m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!),
  );
  for (const label of [...grouped, ...matched].filter((l) => l !== ''))
    expect(labels, `label ${label} in ${expr}`).toContain(label);
  return metrics;
}

describe('docs/ops/grafana-idem.json', () => {
  const dashboard = JSON.parse(read('docs/ops/grafana-idem.json')) as {
    templating: { list: { name: string; type: string; query: unknown }[] };
    panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('is importable: a Prometheus datasource variable every panel uses', () => {
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    for (const p of panels) expect(p.datasource?.uid, p.title).toBe(`\${datasource}`);
  });

  it('every query names catalogue metrics and their labels; the seed metric list has panels', () => {
    const seen = new Set<string>();
    for (const p of panels) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!)
        for (const m of checkQuery(t.expr)) seen.add(m.replace(/_(bucket|sum|count)$/, ''));
    }
    const seed = [
      'claims',
      'replays',
      'mismatches',
      'conflicts',
      'waits',
      'takeovers',
      'storeErrors',
      'storeOperation',
      'gatewayWithoutKey',
      'inProgress',
      'llmTokensSaved',
      'llmCostSaved',
    ] as const;
    for (const field of seed) expect(seen, field).toContain(prometheusName(INSTRUMENTS[field]));
  });
});

describe('docs/ops/alerts.yml', () => {
  const text = read('docs/ops/alerts.yml');
  const alerts = text.split(/\n\s+- alert: /).slice(1);

  it('every alert has one query over catalogue metrics, a severity and a summary', () => {
    expect(text).toMatch(/^groups:\n\s+- name: idem\n\s+rules:\n/m);
    expect(alerts.length).toBeGreaterThanOrEqual(8);
    for (const alert of alerts) {
      const name = alert.split('\n')[0]!;
      expect(name, 'alert names are CamelCase').toMatch(/^Idem[A-Za-z0-9]+$/);
      const exprs = [...alert.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1]!);
      expect(exprs, name).toHaveLength(1);
      checkQuery(exprs[0]!);
      expect(alert, name).toMatch(/^\s+severity: (critical|warning|info)$/m);
      expect(alert, name).toMatch(/^\s+summary: \S/m);
    }
  });

  it('a misspelled metric or label fails the check', () => {
    expect(() => checkQuery('sum(rate(idem_store_error_total[5m]))')).toThrow();
    expect(() => checkQuery('sum by (op) (rate(idem_store_operation_duration_seconds_count[5m]))')).toThrow();
    expect(() => checkQuery('sum(rate(idem_claims_total_bucket[5m]))')).toThrow();
    expect(checkQuery('sum by (error_type) (rate(idem_store_errors_total[5m]))')).toEqual([
      'idem_store_errors_total',
    ]);
  });
});

describe('docs/operations.md', () => {
  it('lists every catalogue instrument with its Prometheus name, OpenTelemetry name and labels', () => {
    const page = read('docs/operations.md');
    for (const instrument of Object.values(INSTRUMENTS)) {
      const row = page.split('\n').find((l) => l.startsWith(`| \`${prometheusName(instrument)}\` |`));
      expect(row, instrument.name).toBeDefined();
      if (instrument.source !== 'gateway') expect(row).toContain(`| \`${instrument.name}\` |`);
      expect(row).toContain(`| ${instrument.kind} |`);
      for (const attribute of instrument.attributes)
        expect(row).toContain(`\`${prometheusLabel(attribute)}\``);
    }
  });

  it.each([
    ['docs/operations.md', 12],
    ['docs/otel.md', 8],
  ])('every PromQL query in %s names catalogue metrics and labels', (path, least) => {
    const page = read(path);
    const queries = [...page.matchAll(/`([^`]*\bidem_[a-z_]+[^`]*\[[^`]*)`/g)].map((m) => m[1]!);
    expect(queries.length).toBeGreaterThanOrEqual(least);
    for (const q of queries) checkQuery(q);
  });
});
