/**
 * Savings: every duplicate LLM call idem answered from a stored or shared outcome instead of
 * the provider is counted with the original call's usage, as tokens and money not spent. One
 * tracker per gateway (read at `GET /savings` and in `/metrics`), and one per process for the
 * in-process wrappers (read with {@link savingsReport}, and exported as OpenTelemetry metrics
 * when `@opentelemetry/api` is installed; without an SDK registered they are no-ops).
 *
 * @module
 */

import { InvalidOptionError } from '../core/errors.ts';
import { INSTRUMENTS, type InstrumentSpec } from '../core/instruments.ts';
import {
  costOf,
  PRICES_AS_OF,
  type PriceTable,
  priceOf,
  resolvePrices,
  type Tokens,
  tokensOf,
} from './prices.ts';
import type { Usage } from './usage.ts';

/** One suppressed duplicate: the call it did not repeat. */
export interface SuppressedCall {
  provider: string;
  /** The record (key + scope, hashed): never the raw key. */
  id: string;
  model?: string | undefined;
  /** The original call's usage, as the provider reported it. */
  usage?: Usage | undefined;
}

/** What one suppressed duplicate saved. */
export interface Saved {
  provider: string;
  model: string;
  tokens: Tokens;
  /** Undefined when the model is not in the price table. */
  costUsd: number | undefined;
}

/** Totals of one model (or of all). */
export interface SavingsTotals {
  duplicatesSuppressed: number;
  tokensSaved: Tokens;
  /** Sum over priced calls. */
  costSavedUsd: number;
  /** Duplicates of models the price table does not list (their tokens count, their cost does not). */
  unpriced: number;
}

/** The JSON a CLI or dashboard reads. */
export interface SavingsReport extends SavingsTotals {
  /** Epoch ms the counting started. */
  since: number;
  pricesAsOf: string;
  byModel: Record<string, SavingsTotals>;
  /** The most recently suppressed keys (at most `maxKeys`), newest first. */
  keys: {
    id: string;
    provider: string;
    model: string;
    usage: Usage | null;
    duplicates: number;
    lastAt: number;
  }[];
}

/** A savings tracker. */
export interface Savings {
  /** Counts one suppressed duplicate; answers what it saved. */
  record(call: SuppressedCall): Saved;
  report(): SavingsReport;
  /** Called after every `record` (metrics exporters). */
  onSaved(listener: (saved: Saved) => void): void;
}

/** Options of {@link createSavings}. */
export interface SavingsOptions {
  /** Prices over (and beyond) the shipped defaults, USD per million tokens. */
  prices?: PriceTable;
  /** Keys remembered for the report's `keys`. Default 100. */
  maxKeys?: number;
}

const zero = (): SavingsTotals => ({
  duplicatesSuppressed: 0,
  tokensSaved: { input: 0, cached: 0, output: 0 },
  costSavedUsd: 0,
  unpriced: 0,
});

/**
 * A new tracker.
 *
 * @example
 * const savings = createSavings({ prices: { 'my-model': { input: 1, output: 2 } } });
 * savings.record({ provider: 'openai', id, model: 'gpt-4o', usage: { prompt_tokens: 10, completion_tokens: 5 } });
 * savings.report().costSavedUsd
 */
export function createSavings(options: SavingsOptions = {}): Savings {
  const prices = resolvePrices(options.prices);
  const maxKeys = options.maxKeys ?? 100;
  const since = Date.now();
  const all = zero();
  const byModel = new Map<string, SavingsTotals>();
  const keys = new Map<string, SavingsReport['keys'][number]>();
  const listeners: ((saved: Saved) => void)[] = [];
  const add = (t: SavingsTotals, tokens: Tokens, cost: number | undefined) => {
    t.duplicatesSuppressed++;
    t.tokensSaved.input += tokens.input;
    t.tokensSaved.cached += tokens.cached;
    t.tokensSaved.output += tokens.output;
    if (cost === undefined) t.unpriced++;
    else t.costSavedUsd += cost;
  };
  return {
    record(call) {
      const model = call.model || 'unknown';
      const tokens = tokensOf(call.usage);
      const price = priceOf(model, prices);
      const saved: Saved = {
        provider: call.provider,
        model,
        tokens,
        costUsd: price && costOf(tokens, price),
      };
      add(all, tokens, saved.costUsd);
      const totals = byModel.get(model) ?? zero();
      byModel.set(model, totals);
      add(totals, tokens, saved.costUsd);
      const entry = keys.get(call.id) ?? {
        id: call.id,
        provider: call.provider,
        model,
        usage: call.usage ?? null,
        duplicates: 0,
        lastAt: 0,
      };
      entry.duplicates++;
      entry.lastAt = Date.now();
      keys.delete(call.id); // re-insert: the map's order is recency
      keys.set(call.id, entry);
      if (keys.size > maxKeys) keys.delete(keys.keys().next().value as string);
      for (const listener of listeners) listener(saved);
      return saved;
    },
    report() {
      return structuredClone({
        since,
        pricesAsOf: PRICES_AS_OF,
        ...all,
        byModel: Object.fromEntries(byModel),
        keys: [...keys.values()].reverse(),
      });
    },
    onSaved(listener) {
      listeners.push(listener);
    },
  };
}

let processSavings: Savings | undefined;

/**
 * The tracker the in-process wrappers (`idem/openai`, `idem/anthropic`) count into unless given
 * their own `savings`. On first use it also exports OpenTelemetry counters through
 * `@opentelemetry/api` when that package is installed: `idem.llm.duplicate_calls_suppressed`,
 * `idem.llm.tokens_saved` (attribute `kind`: input, cached, output) and `idem.llm.cost_saved_usd`,
 * all with `provider` and `model` attributes (src/core/instruments.ts).
 *
 * @example
 * const client = withIdem(new OpenAI(), { idem }); // counts into processSavingsTracker()
 */
export function processSavingsTracker(): Savings {
  if (!processSavings) {
    processSavings = createSavings();
    exportToOpenTelemetry(processSavings);
  }
  return processSavings;
}

/**
 * The savings of this process's wrapped clients so far, as JSON-ready data.
 *
 * @example
 * import { savingsReport } from 'idem/openai';
 * console.log(JSON.stringify(savingsReport(), null, 2));
 */
export function savingsReport(): SavingsReport {
  return processSavingsTracker().report();
}

/**
 * Exports a tracker's savings as OpenTelemetry counters (see {@link processSavingsTracker}).
 * A no-op when `@opentelemetry/api` is not installed; the API's own no-op without an SDK.
 *
 * @example
 * exportToOpenTelemetry(createSavings());
 */
export function exportToOpenTelemetry(savings: Savings, meterName = 'idem'): void {
  type Counter = { add(value: number, attributes?: Record<string, string>): void };
  type Api = typeof import('@opentelemetry/api');
  let api: Api | null | undefined;
  // the counters follow the global MeterProvider: an SDK registered later is picked up
  let provider: unknown;
  let counters: { dup: Counter; tokens: Counter; cost: Counter } | undefined;
  const loading = import('@opentelemetry/api').then(
    (module) => {
      api = module;
    },
    () => {
      api = null;
    },
  );
  const emit = (saved: Saved) => {
    if (!api) return;
    const current = api.metrics.getMeterProvider();
    if (current !== provider || !counters) {
      provider = current;
      const meter = current.getMeter(meterName);
      const counter = (spec: InstrumentSpec) =>
        meter.createCounter(spec.name, { unit: spec.unit, description: spec.description });
      counters = {
        dup: counter(INSTRUMENTS.llmSuppressed),
        tokens: counter(INSTRUMENTS.llmTokensSaved),
        cost: counter(INSTRUMENTS.llmCostSaved),
      };
    }
    const at = { provider: saved.provider, model: saved.model };
    counters.dup.add(1, at);
    for (const kind of ['input', 'cached', 'output'] as const) {
      if (saved.tokens[kind] > 0) counters.tokens.add(saved.tokens[kind], { ...at, kind });
    }
    if (saved.costUsd !== undefined) counters.cost.add(saved.costUsd, at);
  };
  savings.onSaved((saved) => {
    if (api === undefined) void loading.then(() => emit(saved));
    else emit(saved);
  });
}

/**
 * The tracker a wrapper counts into, from its `savings` option: a tracker (with `record`), `false`
 * for none, undefined for the process tracker; anything else is an `InvalidOptionError`.
 *
 * @example
 * resolveSavings(undefined, 'withIdem') // the process tracker
 * resolveSavings(42, 'withIdem') // throws InvalidOptionError
 */
export function resolveSavings(value: unknown, label: string): Savings | undefined {
  if (value === false) return undefined;
  if (value === undefined) return processSavingsTracker();
  if (typeof value === 'object' && value !== null && typeof (value as Savings).record === 'function') {
    return value as Savings;
  }
  throw new InvalidOptionError(
    `${label}: savings must be a tracker from createSavings() (with record) or false`,
  );
}

let warned = false;
/**
 * Counts `call` into `savings`, once the caller's answer is settled: a tracker that throws is
 * reported once as a process warning (`IDEM_SAVINGS_TRACKER`), never raised into the call.
 *
 * @example
 * recordSafely(savings, { provider: 'openai', id, model: 'gpt-4o-mini', usage });
 */
export function recordSafely(savings: Savings | undefined, call: SuppressedCall): void {
  try {
    savings?.record(call);
  } catch (error) {
    if (warned) return;
    warned = true;
    const message = error instanceof Error ? error.message : String(error);
    process.emitWarning(
      `idem: the savings tracker threw (${message}); answers are served, savings not counted`,
      {
        code: 'IDEM_SAVINGS_TRACKER',
      },
    );
  }
}
