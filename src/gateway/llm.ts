/**
 * The gateway's LLM presets (`idem serve --preset openai|anthropic`, config `"preset"`): the
 * billable endpoints of one provider as keyed routes with the LLM policy, and the provider
 * rules the gateway applies on those routes (a stream that ended without its last event is
 * never stored as complete; one that failed before generating anything is released; usage is
 * read from JSON and SSE answers; every step of a tool loop under one key is its own record).
 *
 * | | openai | anthropic |
 * |---|---|---|
 * | upstream (default) | `https://api.openai.com` | `https://api.anthropic.com` |
 * | keyed routes | `/v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/images/*` | `/v1/messages`, `/v1/messages/batches`, `/v1/complete` |
 * | fingerprint headers | `content-type`, `openai-organization`, `openai-project`, `openai-beta` | `content-type`, `anthropic-version`, `anthropic-beta` |
 * | fields not fingerprinted | `user`, `metadata`, `stream_options`, `safety_identifier`, `prompt_cache_key` | `metadata` |
 *
 * Everything else (GET `/v1/models`, `/v1/messages/count_tokens`…) passes through unkeyed.
 *
 * @module
 */

import { RELEASED_STATUSES } from '../ai/call.ts';
import { ANTHROPIC, OPENAI, type Provider } from '../ai/providers.ts';
import { type Usage, usageOf } from '../ai/usage.ts';
import { InvalidOptionError } from '../core/errors.ts';
import { nearestName } from '../core/names.ts';
import type { GatewayConfig, RoutePolicy } from './config.ts';

/** The presets. */
export type PresetName = 'openai' | 'anthropic';

const PROVIDERS: Record<PresetName, Provider> = { openai: OPENAI, anthropic: ANTHROPIC };

interface Preset {
  upstream: string;
  defaults: Omit<RoutePolicy, 'path' | 'name'>;
  routes: RoutePolicy[];
}

const policy = (fingerprintHeaders: string[], excludeFields: string[]): Preset['defaults'] => ({
  key: 'required',
  scope: 'required',
  concurrency: 'attach',
  ttl: '24h',
  lease: '30s',
  waitTimeout: '10m',
  // the statuses the in-process wrappers release (a provider bills nothing for them), one list
  outcomes: Object.fromEntries([...RELEASED_STATUSES].map((s) => [String(s), 'release' as const])),
  fingerprintHeaders,
  excludeFields,
  maxRequestBytes: 32 * 1024 * 1024, // long contexts, images, files
});

const PRESETS: Record<PresetName, Preset> = {
  openai: {
    upstream: 'https://api.openai.com',
    defaults: policy(
      ['content-type', 'openai-organization', 'openai-project', 'openai-beta'],
      ['user', 'metadata', 'stream_options', 'safety_identifier', 'prompt_cache_key'],
    ),
    routes: [
      { name: 'openai chat', path: '/v1/chat/completions', llm: 'openai' },
      { name: 'openai completions', path: '/v1/completions', llm: 'openai' },
      { name: 'openai responses', path: '/v1/responses', llm: 'openai' },
      { name: 'openai embeddings', path: '/v1/embeddings', llm: 'openai' },
      { name: 'openai images', path: '/v1/images/*', llm: 'openai' },
    ],
  },
  anthropic: {
    upstream: 'https://api.anthropic.com',
    defaults: policy(['content-type', 'anthropic-version', 'anthropic-beta'], ['metadata']),
    routes: [
      { name: 'anthropic messages', path: '/v1/messages', llm: 'anthropic' },
      { name: 'anthropic batches', path: '/v1/messages/batches', llm: 'anthropic' },
      { name: 'anthropic complete', path: '/v1/complete', llm: 'anthropic' },
    ],
  },
};

/**
 * Checks a preset or route `llm` name.
 *
 * @example
 * presetName('openai', 'preset') // 'openai'
 * presetName('opneai', 'preset') // throws: preset must be 'openai' or 'anthropic', got "opneai" — did you mean openai?
 */
export function presetName(value: unknown, where: string): PresetName {
  if (value === 'openai' || value === 'anthropic') return value;
  const hint = typeof value === 'string' ? nearestName(value, Object.keys(PRESETS)) : undefined;
  throw new InvalidOptionError(
    `${where} must be 'openai' or 'anthropic', got ${JSON.stringify(value)}${hint ? ` — did you mean ${hint}?` : ''}`,
  );
}

/**
 * The config with its preset applied: the preset's upstream unless one is given, its policy
 * under the config's `defaults`, the config's own routes first (first match wins) then the
 * preset's, and the `GET /savings` endpoint. A config without `preset` is returned as is.
 *
 * @example
 * applyPreset({ preset: 'openai', store: 'redis://127.0.0.1:6379' }).upstream // 'https://api.openai.com'
 */
export function applyPreset(config: GatewayConfig): GatewayConfig {
  if (config.preset === undefined) return config;
  const preset = PRESETS[presetName(config.preset, 'preset')];
  if (config.routes !== undefined && !Array.isArray(config.routes))
    throw new InvalidOptionError('routes must be an array');
  return {
    ...config,
    upstream: config.upstream ?? preset.upstream,
    defaults: { ...preset.defaults, ...config.defaults },
    routes: [...(config.routes ?? []), ...preset.routes.map((r) => ({ ...r }))],
    endpoints: { savings: '/savings', ...config.endpoints },
  };
}

/** What the gateway reads from an LLM request body. */
export interface LlmRequestFacts {
  model: string | undefined;
  /**
   * The request's turn: how many messages (or Responses input items) it carries, and the
   * `previous_response_id` it continues. Each step of a tool loop sent under one key is its own
   * record (`<key>#turn-<n>`); a retry of a step carries the same turn.
   */
  turn: string | undefined;
}

/**
 * Reads the model and turn of a JSON request body (nothing from other bodies).
 *
 * @example
 * requestFacts(new TextEncoder().encode('{"model":"gpt-4o","messages":[{},{}]}')) // { model: 'gpt-4o', turn: '2' }
 */
export function requestFacts(body: Uint8Array): LlmRequestFacts {
  let parsed: { model?: unknown; messages?: unknown; input?: unknown; previous_response_id?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    return { model: undefined, turn: undefined };
  }
  if (typeof parsed !== 'object' || parsed === null) return { model: undefined, turn: undefined };
  const model = typeof parsed.model === 'string' ? parsed.model : undefined;
  const list = Array.isArray(parsed.messages)
    ? parsed.messages
    : Array.isArray(parsed.input)
      ? parsed.input
      : undefined;
  const previous = typeof parsed.previous_response_id === 'string' ? `@${parsed.previous_response_id}` : '';
  const turn = list ? `${list.length}${previous}` : previous || undefined;
  return { model, turn };
}

/** How an LLM response ended, read from its recorded body. */
export interface LlmResponseFacts {
  usage: Usage | undefined;
  /** False for a stream that ended without the provider's last event. */
  complete: boolean;
  /** A stream that failed before generating anything: not billed, so released. */
  unbilled: boolean;
}

/**
 * Reads usage and completeness from a recorded response body.
 *
 * @example
 * responseFacts('openai', 'text/event-stream', 'data: {"choices":[]}\n\n') // complete: false
 */
export function responseFacts(
  provider: PresetName,
  contentType: string | undefined,
  text: string,
): LlmResponseFacts {
  const isStream = contentType?.includes('text/event-stream') ?? false;
  const p = PROVIDERS[provider];
  const complete = !isStream || p.streamComplete(text);
  return {
    usage: usageOf(contentType ?? null, text),
    complete,
    unbilled: !complete && p.streamUnbilled?.(text) === true,
  };
}
