/**
 * `idempotentTool`: a Vercel AI SDK tool whose `execute` runs once per logical call. The key is
 * runtime identity, never model-written text alone: the run id, the loop step (assistant turns
 * already in the prompt), the tool name and the canonical JSON of the arguments. A resumed run
 * that re-issues a call under a new `toolCallId` gets the first call's output.
 *
 * @module
 */
import type { Tool, ToolExecutionOptions, ToolSet } from 'ai';
import type { Duration } from '../../core/duration.ts';
import type { Idem } from '../../core/engine.ts';
import { InvalidOptionError } from '../../core/errors.ts';
import { resolveRunOptions } from '../../core/options.ts';
import { checkKnownOptions } from '../../http/known.ts';
import { activeRun } from '../../workflow/ambient.ts';
import { type ToolCallContext, withToolCall } from '../tool-context.ts';

/** The key namespace of tool calls: keys are `ai-tool:<sha256 of [run, step, name, input]>`. */
export const TOOL_KEY_NAMESPACE = 'ai-tool';

type Options = ToolExecutionOptions<unknown>;

/**
 * Options of {@link idempotentTool}.
 *
 * @example
 * const options: IdempotentToolOptions = { idem, name: 'refund', run: ({ context }) => context.runId };
 */
export interface IdempotentToolOptions<OUTPUT = unknown> {
  idem: Idem;
  /** The tool's name in the tool set (part of the key). */
  name: string;
  /**
   * The run the call belongs to: a string (a tool set per run) or a function of the execution
   * options (`context`, `messages`). Not needed inside `idem.workflow`, which supplies its run.
   */
  run?: string | ((options: Options) => string | undefined);
  /** Scope of every record (a tenant…). */
  scope?: string | readonly string[];
  /** Return true for an output that should not be stored (a transient one): a retry runs again. */
  releaseIf?: (output: OUTPUT) => boolean;
  /** How long a duplicate waits for the call in flight. Default `'5m'`. */
  waitTimeout?: Duration;
  ttl?: Duration;
  lease?: Duration;
}

const KNOWN = ['idem', 'name', 'run', 'scope', 'releaseIf', 'waitTimeout', 'ttl', 'lease'];

/**
 * Wraps a tool so its `execute` runs once per (run, step, tool, arguments): an AI SDK retry, a
 * concurrent duplicate, or a resumed run re-issuing the call with a new `toolCallId` gets the
 * stored output. Inside `idem.workflow` the call is a journaled step `tool:<name>` instead.
 * Thrown errors are not stored: the next call runs again (`toolCall().mayHaveRun` says whether
 * an earlier attempt may have acted). Identical calls in one step are one logical call.
 *
 * @example
 * import { generateText, tool } from 'ai';
 * import { idempotentTool, toolCall } from 'idem/ai-sdk';
 *
 * const refund = idempotentTool(
 *   tool({ inputSchema: z.object({ order: z.string() }), execute: ({ order }) => payments.refund(order, toolCall()!.downstreamKey) }),
 *   { idem, name: 'refund', run: `ticket-${ticketId}` },
 * );
 * await generateText({ model, prompt, tools: { refund } });
 */
export function idempotentTool<T extends Tool>(tool: T, options: IdempotentToolOptions): T {
  checkToolOptions(options);
  const execute = tool.execute as ((input: unknown, o: Options) => unknown) | undefined;
  if (typeof execute !== 'function') {
    throw new InvalidOptionError(`idempotentTool(${options.name}): the tool has no execute to wrap`);
  }
  const { idem, name } = options;
  const once = async (input: unknown, o: Options) => {
    const call = (signal: AbortSignal, ctx: ToolCallContext) => {
      const abortSignal = o.abortSignal ? AbortSignal.any([o.abortSignal, signal]) : signal;
      return withToolCall(ctx, async () => final(await execute(input, { ...o, abortSignal })));
    };
    const run = activeRun();
    if (run) {
      return run.step(`tool:${name}`, (c) => call(c.signal, contextOf(c.stepId, c)), { input });
    }
    const runId = typeof options.run === 'function' ? options.run(o) : options.run;
    if (typeof runId !== 'string' || runId === '') {
      throw new InvalidOptionError(
        `idempotentTool(${name}): no run id for this call: pass { run } or call inside idem.workflow`,
      );
    }
    const step = o.messages.filter((m) => m.role === 'assistant').length;
    const key = idem.key(TOOL_KEY_NAMESPACE, runId, step, name, input ?? null);
    return idem.run(key, (ctx) => call(ctx.signal, contextOf(ctx.key, ctx)), {
      input: { name, input: input ?? null },
      onInProgress: 'wait',
      waitTimeout: options.waitTimeout ?? '5m',
      ...(options.scope !== undefined && { scope: options.scope }),
      ...(options.ttl !== undefined && { ttl: options.ttl }),
      ...(options.lease !== undefined && { lease: options.lease }),
      ...(options.releaseIf && { releaseIf: options.releaseIf }),
    });
  };
  return { ...tool, execute: once } as T;
}

/**
 * {@link idempotentTool} over a whole tool set (each tool keyed by its name in the set); tools
 * without `execute` (client-side tools) are left as they are.
 *
 * @example
 * const tools = idempotentTools({ refund, closeTicket }, { idem, run: `ticket-${id}` });
 */
export function idempotentTools<T extends ToolSet>(
  tools: T,
  options: Omit<IdempotentToolOptions, 'name'>,
): T {
  const out: Record<string, Tool> = {};
  for (const [name, t] of Object.entries(tools)) {
    out[name] = typeof t.execute === 'function' ? idempotentTool(t, { ...options, name }) : t;
  }
  return out as T;
}

function checkToolOptions(options: IdempotentToolOptions): void {
  if (!options || typeof options.idem?.run !== 'function') {
    throw new InvalidOptionError('idempotentTool needs { idem }: a createIdem({ store }) instance');
  }
  checkKnownOptions(options, KNOWN);
  if (typeof options.name !== 'string' || options.name === '') {
    throw new InvalidOptionError('idempotentTool needs { name }: the tool name in the tool set');
  }
  const run = options.run;
  if (run !== undefined && typeof run !== 'function' && (typeof run !== 'string' || run === '')) {
    throw new InvalidOptionError('idempotentTool: run must be a non-empty string or a function');
  }
  if (options.releaseIf !== undefined && typeof options.releaseIf !== 'function') {
    throw new InvalidOptionError('idempotentTool: releaseIf must be a function');
  }
  const { scope, waitTimeout, ttl, lease } = options;
  resolveRunOptions({ scope, waitTimeout, ttl, lease }, 'idempotentTool');
}

/** A streaming tool's last (final) output; any other output as it is. */
async function final(output: unknown): Promise<unknown> {
  if (output === null || typeof output !== 'object' || !(Symbol.asyncIterator in output)) return output;
  let last: unknown;
  for await (const part of output as AsyncIterable<unknown>) last = part;
  return last;
}

function contextOf(key: string, c: Omit<ToolCallContext, 'key'>): ToolCallContext {
  return { key, downstreamKey: c.downstreamKey, attempt: c.attempt, mayHaveRun: c.mayHaveRun };
}
