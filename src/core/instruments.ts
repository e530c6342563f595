/**
 * The one instrument catalogue: every metric idem records, with its OpenTelemetry name, kind,
 * unit, description and attributes. `idem/otel` creates its OpenTelemetry instruments from it,
 * the gateway creates its prom-client metrics from it, and {@link prometheusName} gives the name
 * an OpenTelemetry Prometheus exporter produces for an instrument (dots to `_`, the unit as a
 * suffix, `_total` on counters), so the library's metrics (exported through an SDK) and the
 * gateway's `/metrics` share one set of queries, dashboards and alerts. docs/operations.md
 * lists it.
 *
 * @module
 */

/** Where an instrument is recorded. */
export type InstrumentSource = 'engine' | 'store' | 'llm' | 'gateway';

/** One instrument. */
export interface InstrumentSpec {
  /** The OpenTelemetry name (dotted). */
  readonly name: string;
  readonly kind: 'counter' | 'histogram';
  /** UCUM unit; `{…}` annotations are dropped from the Prometheus name. */
  readonly unit: string;
  readonly description: string;
  /** Attribute names; the Prometheus label is {@link prometheusLabel} of each. */
  readonly attributes: readonly string[];
  /** `engine`/`store`/`llm`: the library and the gateway; `gateway`: the gateway only. */
  readonly source: InstrumentSource;
  /** Histogram bucket boundaries (in the unit), the same for both exporters. */
  readonly buckets?: readonly number[];
}

const spec = (
  name: string,
  kind: InstrumentSpec['kind'],
  unit: string,
  description: string,
  attributes: readonly string[],
  source: InstrumentSource,
  buckets?: readonly number[],
): InstrumentSpec => ({ name, kind, unit, description, attributes, source, ...(buckets && { buckets }) });

/** The buckets of `idem.store.operation.duration`, seconds. */
export const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** The buckets of `idem.in_progress.duration`, seconds. */
export const IN_PROGRESS_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600];

/**
 * Every instrument, by the field name the code uses.
 *
 * @example
 * import { INSTRUMENTS, prometheusName } from './instruments.ts';
 * prometheusName(INSTRUMENTS.inProgress); // 'idem_in_progress_duration_seconds'
 */
export const INSTRUMENTS = {
  claims: spec(
    'idem.claims',
    'counter',
    '{claim}',
    'Keys claimed: the action runs (takeovers included)',
    ['idem.takeover'],
    'engine',
  ),
  takeovers: spec('idem.takeovers', 'counter', '{claim}', 'Expired leases taken over', [], 'engine'),
  replays: spec(
    'idem.replays',
    'counter',
    '{call}',
    'Calls answered from a stored or shared outcome',
    ['idem.replay.shared', 'idem.replay.cached'],
    'engine',
  ),
  mismatches: spec(
    'idem.fingerprint_mismatches',
    'counter',
    '{call}',
    'Keys reused with another input',
    [],
    'engine',
  ),
  conflicts: spec(
    'idem.in_progress_conflicts',
    'counter',
    '{call}',
    'Duplicates refused while the key is in progress',
    [],
    'engine',
  ),
  waits: spec(
    'idem.waits',
    'counter',
    '{call}',
    'Duplicates that waited for an in-progress outcome',
    [],
    'engine',
  ),
  releases: spec('idem.releases', 'counter', '{key}', 'Keys released (a retry runs again)', [], 'engine'),
  leaseLosses: spec(
    'idem.lease_lost',
    'counter',
    '{outcome}',
    'Outcomes not stored because the lease was lost',
    [],
    'engine',
  ),
  storeErrors: spec(
    'idem.store_errors',
    'counter',
    '{error}',
    'Store operations that failed',
    ['error.type'],
    'engine',
  ),
  tooLarge: spec(
    'idem.outcomes_too_large',
    'counter',
    '{outcome}',
    'Outcomes refused for their size',
    [],
    'engine',
  ),
  inProgress: spec(
    'idem.in_progress.duration',
    'histogram',
    's',
    'Time from claim to stored outcome',
    ['idem.outcome.error'],
    'engine',
    IN_PROGRESS_BUCKETS,
  ),
  storeOperation: spec(
    'idem.store.operation.duration',
    'histogram',
    's',
    'Store operation latency',
    ['idem.store.operation', 'idem.store.name', 'error.type'],
    'store',
    STORE_BUCKETS,
  ),
  llmSuppressed: spec(
    'idem.llm.duplicate_calls_suppressed',
    'counter',
    '{call}',
    'Duplicate LLM calls answered from a stored or shared outcome instead of the provider',
    ['provider', 'model'],
    'llm',
  ),
  llmTokensSaved: spec(
    'idem.llm.tokens_saved',
    'counter',
    '{token}',
    'Tokens not billed again, by kind',
    ['provider', 'model', 'kind'],
    'llm',
  ),
  llmCostSaved: spec(
    'idem.llm.cost_saved_usd',
    'counter',
    '{USD}',
    'USD not billed again, at the price table (models it lists)',
    ['provider', 'model'],
    'llm',
  ),
  gatewayRequests: spec(
    'idem.gateway.requests',
    'counter',
    '{request}',
    'Gateway requests by route and result',
    ['route', 'result'],
    'gateway',
  ),
  gatewayWithoutKey: spec(
    'idem.gateway.requests_without_key',
    'counter',
    '{request}',
    'Requests on an idempotent route that carried no key',
    ['route'],
    'gateway',
  ),
  gatewayWait: spec(
    'idem.gateway.wait.duration',
    'histogram',
    's',
    'How long duplicates waited for the outcome of the request holding their key (on the store, or joined to the live request in this process)',
    [],
    'gateway',
    [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  ),
  gatewayUpstreamErrors: spec(
    'idem.gateway.upstream_errors',
    'counter',
    '{error}',
    'Upstream failures by phase (before_send, after_send)',
    ['phase'],
    'gateway',
  ),
} as const satisfies Record<string, InstrumentSpec>;

/** A field name of {@link INSTRUMENTS}. */
export type InstrumentField = keyof typeof INSTRUMENTS;

/** UCUM units with a Prometheus suffix (OpenTelemetry's Prometheus compatibility spec). */
const UNIT_SUFFIX: Record<string, string> = { s: 'seconds', ms: 'milliseconds', By: 'bytes', '1': 'ratio' };

/**
 * The Prometheus label of an attribute: characters other than `[a-zA-Z0-9_]` become `_`.
 *
 * @example
 * prometheusLabel('idem.store.operation'); // 'idem_store_operation'
 */
export function prometheusLabel(attribute: string): string {
  return attribute.replace(/[^a-zA-Z0-9_]/g, '_');
}

/**
 * The metric name an OpenTelemetry Prometheus exporter gives an instrument: the name with
 * `_` for other characters, the unit's suffix (none for `{…}` annotations), `_total` on
 * counters. Histograms expose `<name>_bucket`, `<name>_sum` and `<name>_count`.
 *
 * @example
 * prometheusName(INSTRUMENTS.claims); // 'idem_claims_total'
 * prometheusName(INSTRUMENTS.storeOperation); // 'idem_store_operation_duration_seconds'
 */
export function prometheusName(instrument: Pick<InstrumentSpec, 'name' | 'kind' | 'unit'>): string {
  let name = prometheusLabel(instrument.name);
  const unit = instrument.unit.startsWith('{')
    ? ''
    : (UNIT_SUFFIX[instrument.unit] ?? prometheusLabel(instrument.unit));
  if (unit && !name.endsWith(`_${unit}`)) name += `_${unit}`;
  if (instrument.kind === 'counter' && !name.endsWith('_total')) name += '_total';
  return name;
}
