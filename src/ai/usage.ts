/**
 * The token usage a provider reported for one call, read from its JSON answer or from the
 * events of its stream, kept with the stored outcome so the savings of every suppressed
 * duplicate can be counted later.
 *
 * @module
 */

/** Token counts as the provider reported them (`prompt_tokens`, `input_tokens`, …). */
export type Usage = Record<string, unknown>;

/**
 * The usage in a response body: the `usage` of a JSON answer, or the usage fields of an SSE
 * stream's events merged in order (OpenAI's last chunk, a Responses `response.completed`,
 * Anthropic's `message_start` then `message_delta`). Undefined when there is none.
 *
 * @example
 * usageOf('application/json', '{"usage":{"prompt_tokens":3}}') // { prompt_tokens: 3 }
 */
export function usageOf(contentType: string | null, text: string): Usage | undefined {
  if (contentType?.includes('text/event-stream')) {
    let usage: Usage | undefined;
    for (const line of text.split('\n')) {
      if (!line.startsWith('data:') || !line.includes('usage')) continue;
      const found = usageIn(parse(line.slice(5)));
      if (found) usage = { ...usage, ...found };
    }
    return usage;
  }
  return usageIn(parse(text));
}

function usageIn(value: unknown): Usage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { usage?: unknown; response?: { usage?: unknown }; message?: { usage?: unknown } };
  const usage = v.usage ?? v.response?.usage ?? v.message?.usage;
  return typeof usage === 'object' && usage !== null ? (usage as Usage) : undefined;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
