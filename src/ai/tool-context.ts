/**
 * The key, downstream key and attempt of the tool call running now (an MCP tool wrapped by
 * `idem/mcp`, or an AI SDK tool wrapped by `idempotentTool`), for tool code that calls an
 * external API with its own idempotency key. One context for both, so tool code reads it the
 * same way whichever wrapper runs it.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What `toolCall()` answers inside a wrapped tool handler.
 *
 * @example
 * const { downstreamKey } = toolCall()!;
 */
export interface ToolCallContext {
  /** The call's key (or, inside `idem.workflow`, the journal step id). */
  key: string;
  /** Stable across retries of this call: pass it to external APIs as their idempotency key. */
  downstreamKey: string;
  /** 1 the first time; +1 each time a crashed attempt is taken over. */
  attempt: number;
  /** True when an earlier attempt started and did not record a result: its effect may exist. */
  mayHaveRun: boolean;
}

const storage = new AsyncLocalStorage<ToolCallContext>();

/**
 * The keyed tool call the caller is inside, or undefined (an unkeyed or read-only call).
 *
 * @example
 * await payments.refund(order, { idempotencyKey: toolCall()?.downstreamKey });
 */
export function toolCall(): ToolCallContext | undefined {
  return storage.getStore();
}

/** Runs `fn` as the tool call `ctx`. */
export function withToolCall<T>(ctx: ToolCallContext, fn: () => T): T {
  return storage.run(ctx, fn);
}
