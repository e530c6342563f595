/**
 * What idem knows about each LLM provider's wire format: which requests are billable, when a
 * streamed answer really ended, and when a stream that ended early was not billed. Shared by
 * the in-process wrappers (`idem/openai`, `idem/anthropic`) and the gateway's LLM preset.
 *
 * @module
 */

/** A provider's wire facts. */
export interface Provider {
  name: 'openai' | 'anthropic';
  /** Provider response headers worth replaying, besides the defaults. */
  replayHeaders: readonly string[];
  /** Paths (under the API base) of the billable, non-idempotent endpoints. */
  billable: RegExp;
  /** True when an SSE body ended with the provider's last event (not merely closed). */
  streamComplete(text: string): boolean;
  /**
   * True when an SSE body that ended without its last event ended in a provider error before any
   * content was generated (Anthropic's mid-stream `overloaded_error`): not billed, so released.
   */
  streamUnbilled?(text: string): boolean;
}

/**
 * OpenAI: chat completions, legacy completions, Responses, embeddings, images.
 *
 * @example
 * OPENAI.billable.test('/v1/responses') // true
 */
export const OPENAI: Provider = {
  name: 'openai',
  replayHeaders: ['openai-model', 'openai-organization', 'openai-processing-ms', 'openai-version'],
  billable: /\/(chat\/completions|completions|responses|embeddings|images\/(generations|edits|variations))$/,
  streamComplete: (text) =>
    /^data: \[DONE\]\s*$/m.test(text) ||
    /^event: response\.(completed|failed|incomplete)\s*$/m.test(text) ||
    /"type"\s*:\s*"response\.(completed|failed|incomplete)"/.test(text),
  // a stream that failed before any output was generated: nothing billed. Responses: an `error`
  // event and no text delta. Chat completions: a `data: {"error": …}` chunk and no chunk whose
  // delta carried content or a tool call (the first chunk's `"content":""` is not output).
  streamUnbilled: (text) =>
    (/^event: error\s*$/m.test(text) && !/^event: response\.output_text\.delta\s*$/m.test(text)) ||
    (/^data: *\{\s*"error"\s*:/m.test(text) &&
      !/"delta"\s*:\s*\{[^}]*"(content"\s*:\s*"[^"]|tool_calls")/.test(text)),
};

/**
 * Anthropic: messages (streamed or not), message batches, legacy completions.
 *
 * @example
 * ANTHROPIC.streamComplete('event: message_stop\ndata: {}\n\n') // true
 */
export const ANTHROPIC: Provider = {
  name: 'anthropic',
  replayHeaders: ['anthropic-organization-id'],
  billable: /\/v1\/(messages|messages\/batches|complete)$/,
  streamComplete: (text) => /^event: message_stop\s*$/m.test(text) || /^event: completion\s*$/m.test(text),
  streamUnbilled: (text) => /^event: error\s*$/m.test(text) && !/^event: content_block_delta\s*$/m.test(text),
};
