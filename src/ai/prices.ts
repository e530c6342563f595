/**
 * Token counts and prices: a provider's usage object normalized to input, cached-input and
 * output tokens, and what those cost from a price table. The shipped table covers common
 * OpenAI and Anthropic models at list price (USD per million tokens, standard tier); it is a
 * default, dated by {@link PRICES_AS_OF}: pass your own (`prices` option / config) to override
 * or extend it.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';
import type { Usage } from './usage.ts';

/** USD per million tokens. `cachedInput` defaults to `input`. */
export interface ModelPrice {
  input: number;
  output: number;
  cachedInput?: number;
}

/** Model name (or name prefix: `gpt-4o` covers `gpt-4o-2024-08-06`) → price. */
export type PriceTable = Record<string, ModelPrice>;

/**
 * When the shipped prices were taken from the providers' public pricing pages.
 *
 * @example
 * console.log(`prices as of ${PRICES_AS_OF}`);
 */
export const PRICES_AS_OF = '2025-11-30';

/**
 * The shipped list prices (standard tier, USD per million tokens).
 *
 * @example
 * DEFAULT_PRICES['gpt-4o-mini'] // { input: 0.15, output: 0.6, cachedInput: 0.075 }
 */
export const DEFAULT_PRICES: Readonly<PriceTable> = Object.freeze({
  'gpt-5': { input: 1.25, output: 10, cachedInput: 0.125 },
  'gpt-5-mini': { input: 0.25, output: 2, cachedInput: 0.025 },
  'gpt-5-nano': { input: 0.05, output: 0.4, cachedInput: 0.005 },
  'gpt-4.1': { input: 2, output: 8, cachedInput: 0.5 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6, cachedInput: 0.1 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4, cachedInput: 0.025 },
  'gpt-4o': { input: 2.5, output: 10, cachedInput: 1.25 },
  'gpt-4o-mini': { input: 0.15, output: 0.6, cachedInput: 0.075 },
  o3: { input: 2, output: 8, cachedInput: 0.5 },
  'o4-mini': { input: 1.1, output: 4.4, cachedInput: 0.275 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'claude-opus-4-5': { input: 5, output: 25, cachedInput: 0.5 },
  'claude-opus-4-1': { input: 15, output: 75, cachedInput: 1.5 },
  'claude-opus-4': { input: 15, output: 75, cachedInput: 1.5 },
  'claude-sonnet-4-5': { input: 3, output: 15, cachedInput: 0.3 },
  'claude-sonnet-4': { input: 3, output: 15, cachedInput: 0.3 },
  'claude-haiku-4-5': { input: 1, output: 5, cachedInput: 0.1 },
  'claude-3-5-haiku': { input: 0.8, output: 4, cachedInput: 0.08 },
});

/** Tokens of one call: `input` excludes cached input; `cached` is input read from the provider's cache. */
export interface Tokens {
  input: number;
  cached: number;
  output: number;
}

/**
 * Normalizes a usage object (OpenAI chat `prompt_tokens`…, Responses `input_tokens`…,
 * Anthropic `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens`, the AI
 * SDK's `inputTokens` / `outputTokens`).
 * OpenAI counts cached tokens inside the input; Anthropic apart: both come out apart.
 *
 * @example
 * tokensOf({ prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } })
 * // { input: 6, cached: 4, output: 5 }
 */
export function tokensOf(usage: Usage | undefined): Tokens {
  if (!usage) return { input: 0, cached: 0, output: 0 };
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
  // the AI SDK's usage: { inputTokens: { total, noCache, cacheRead, cacheWrite }, outputTokens: { total } }
  const input = usage.inputTokens as Record<string, unknown> | number | undefined;
  if (typeof input === 'object' && input !== null) {
    const cached = n(input.cacheRead);
    const noCache = input.noCache === undefined ? n(input.total) - cached : n(input.noCache);
    return {
      input: Math.max(0, noCache),
      cached,
      output: n((usage.outputTokens as Record<string, unknown> | undefined)?.total),
    };
  }
  if (typeof input === 'number') {
    const cached = Math.min(input, n(usage.cachedInputTokens));
    return { input: n(input) - cached, cached, output: n(usage.outputTokens) };
  }
  const details = (usage.prompt_tokens_details ?? usage.input_tokens_details) as
    | { cached_tokens?: unknown }
    | undefined;
  if ('cache_read_input_tokens' in usage || 'cache_creation_input_tokens' in usage) {
    return {
      input: n(usage.input_tokens) + n(usage.cache_creation_input_tokens),
      cached: n(usage.cache_read_input_tokens),
      output: n(usage.output_tokens),
    };
  }
  const total = n(usage.prompt_tokens ?? usage.input_tokens);
  const cached = Math.min(total, n(details?.cached_tokens));
  return { input: total - cached, cached, output: n(usage.completion_tokens ?? usage.output_tokens) };
}

/**
 * The price of `model` in `table`: an exact entry, else the longest entry the name starts with
 * followed by `-` (a dated or suffixed snapshot). Undefined when the model is not listed.
 *
 * @example
 * priceOf('claude-sonnet-4-5-20250929') // { input: 3, output: 15, cachedInput: 0.3 }
 */
export function priceOf(
  model: string | undefined,
  table: PriceTable = DEFAULT_PRICES,
): ModelPrice | undefined {
  if (!model) return undefined;
  if (Object.hasOwn(table, model)) return table[model];
  let best: string | undefined;
  for (const name of Object.keys(table)) {
    if (model.startsWith(`${name}-`) && (best === undefined || name.length > best.length)) best = name;
  }
  return best === undefined ? undefined : table[best];
}

/**
 * What `tokens` cost at `price`, in USD.
 *
 * @example
 * costOf({ input: 1_000_000, cached: 0, output: 0 }, { input: 2.5, output: 10 }) // 2.5
 */
export function costOf(tokens: Tokens, price: ModelPrice): number {
  return (
    (tokens.input * price.input +
      tokens.cached * (price.cachedInput ?? price.input) +
      tokens.output * price.output) /
    1_000_000
  );
}

/**
 * Checks a price table from options or a config file: the shipped defaults plus (over) `own`.
 *
 * @example
 * resolvePrices({ 'my-model': { input: 1, output: 2 } }, 'prices')['gpt-4o'] // still there
 */
export function resolvePrices(own: unknown, where = 'prices'): PriceTable {
  if (own === undefined) return DEFAULT_PRICES;
  if (typeof own !== 'object' || own === null || Array.isArray(own))
    throw new InvalidOptionError(`${where} must be an object of model → { input, output, cachedInput? }`);
  const out: PriceTable = { ...DEFAULT_PRICES };
  for (const [model, price] of Object.entries(own)) {
    const p = price as Record<string, unknown>;
    const ok =
      typeof p === 'object' &&
      p !== null &&
      Object.keys(p).every((k) => k === 'input' || k === 'output' || k === 'cachedInput') &&
      ['input', 'output', 'cachedInput'].every(
        (k) =>
          (k === 'cachedInput' && p[k] === undefined) || (typeof p[k] === 'number' && (p[k] as number) >= 0),
      );
    if (!ok)
      throw new InvalidOptionError(
        `${where}["${model}"] must be { input, output, cachedInput? } in USD per million tokens (numbers ≥ 0)`,
      );
    out[model] = p as unknown as ModelPrice;
  }
  return out;
}
