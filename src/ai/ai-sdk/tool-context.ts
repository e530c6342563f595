/**
 * The key, downstream key and attempt of the `idempotentTool` call running now, for tool code
 * that calls an external API with its own idempotency key.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What `toolCall()` answers inside an `idempotentTool`'s `execute`.
 *
 * @example
 * const { downstreamKey, mayHaveRun } = toolCall()!;
 */
export interface ToolCallContext {
  /** The call's idem key (or, inside `idem.workflow`, the journal step id). */
  key: string;
  /** Stable across retries and resumes of this logical call: pass it to external APIs. */
  downstreamKey: string;
  /** 1 the first time; +1 each time a crashed attempt is taken over. */
  attempt: number;
  /** True when an earlier attempt started and did not record a result: its effect may exist. */
  mayHaveRun: boolean;
}

const storage = new AsyncLocalStorage<ToolCallContext>();

/**
 * The `idempotentTool` call the caller is inside, or undefined.
 *
 * @example
 * await ledger.refund(order, { idempotencyKey: toolCall()?.downstreamKey });
 */
export function toolCall(): ToolCallContext | undefined {
  return storage.getStore();
}

/** Runs `fn` as the tool call `ctx`. */
export function withToolCall<T>(ctx: ToolCallContext, fn: () => T): T {
  return storage.run(ctx, fn);
}
