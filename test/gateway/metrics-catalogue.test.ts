/**
 * The gateway's `/metrics` and `idem/otel` share one instrument catalogue
 * (src/core/instruments.ts): the Prometheus names below are the contract dashboards and alerts
 * rely on (docs/operations.md); the exposition of a real gateway has every catalogue instrument
 * under its name and kind, and its series carry only the catalogue's labels.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { INSTRUMENTS, prometheusLabel, prometheusName } from '../../src/core/instruments.ts';
import { request, type Stack, startStack } from './helpers.ts';

const EXPECTED: Record<string, string> = {
  claims: 'idem_claims_total',
  takeovers: 'idem_takeovers_total',
  replays: 'idem_replays_total',
  mismatches: 'idem_fingerprint_mismatches_total',
  conflicts: 'idem_in_progress_conflicts_total',
  waits: 'idem_waits_total',
  releases: 'idem_releases_total',
  leaseLosses: 'idem_lease_lost_total',
  storeErrors: 'idem_store_errors_total',
  tooLarge: 'idem_outcomes_too_large_total',
  inProgress: 'idem_in_progress_duration_seconds',
  storeOperation: 'idem_store_operation_duration_seconds',
  llmSuppressed: 'idem_llm_duplicate_calls_suppressed_total',
  llmTokensSaved: 'idem_llm_tokens_saved_total',
  llmCostSaved: 'idem_llm_cost_saved_usd_total',
  gatewayRequests: 'idem_gateway_requests_total',
  gatewayWithoutKey: 'idem_gateway_requests_without_key_total',
  gatewayWait: 'idem_gateway_wait_duration_seconds',
  gatewayUpstreamErrors: 'idem_gateway_upstream_errors_total',
};

let s: Stack;
beforeAll(async () => {
  s = await startStack({ routes: [{ path: '/payments', key: 'optional' }] });
});
afterAll(() => s.close());

const post = (key?: string) =>
  request(s.url, {
    method: 'POST',
    path: '/payments',
    headers: { 'content-type': 'application/json', ...(key && { 'idempotency-key': key }) },
    body: '{"amount":1}',
  });

it('the catalogue gives the OpenTelemetry Prometheus exporter names', () => {
  const names = Object.fromEntries(
    Object.entries(INSTRUMENTS).map(([field, i]) => [field, prometheusName(i)]),
  );
  expect(names).toEqual(EXPECTED);
  expect(prometheusName({ name: 'a.b', kind: 'histogram', unit: 'By' })).toBe('a_b_bytes');
  expect(prometheusName({ name: 'a.b_seconds', kind: 'counter', unit: 's' })).toBe('a_b_seconds_total');
});

it('GET /metrics exposes every catalogue instrument under its name, kind and labels', async () => {
  await post('cat-1');
  await post('cat-1');
  await post();
  const text = (await request(s.url, { method: 'GET', path: '/metrics' })).text;
  for (const instrument of Object.values(INSTRUMENTS))
    expect(text, instrument.name).toContain(`# TYPE ${prometheusName(instrument)} ${instrument.kind}\n`);

  const byName = new Map(Object.values(INSTRUMENTS).map((i) => [prometheusName(i), i]));
  const seen = new Set<string>();
  for (const metric of await s.gateway.metrics.registry.getMetricsAsJSON()) {
    const instrument = byName.get(metric.name);
    if (!instrument) {
      expect(metric.name, 'only the catalogue and the process metrics').toMatch(/^(process|nodejs)_/);
      continue;
    }
    const allowed = new Set([...instrument.attributes.map(prometheusLabel), 'le']);
    for (const value of metric.values) {
      seen.add(metric.name);
      for (const label of Object.keys(value.labels))
        expect(allowed, `${metric.name}{${label}}`).toContain(label);
    }
  }
  for (const name of [
    'idem_claims_total',
    'idem_replays_total',
    'idem_in_progress_duration_seconds',
    'idem_store_operation_duration_seconds',
    'idem_gateway_requests_total',
    'idem_gateway_requests_without_key_total',
  ])
    expect(seen).toContain(name);
});
