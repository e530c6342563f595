/**
 * One MCP tool handler made to act once per key: where the key and the scope come from, what
 * passes through, what is stored and what is released. `withIdem` (index.ts) applies it to every
 * tool a server registers.
 *
 * @module
 */
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type {
  CallToolResult,
  ServerNotification,
  ServerRequest,
  ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import type { Duration } from '../../core/duration.ts';
import type { Idem } from '../../core/engine.ts';
import { InvalidKeyError, InvalidOptionError, isIdemError } from '../../core/errors.ts';
import { activeRun } from '../../workflow/ambient.ts';
import { type ToolCallContext, withToolCall } from '../tool-context.ts';

/** The `_meta` field a client puts its key in: `params._meta["idem/key"]`. */
export const KEY_META = 'idem/key';
/** Set to `true` in a result's `_meta` when it is a stored result answered again. */
export const REPLAYED_META = 'idem/replayed';
/** The idem error code of a result that idem itself answered with (`in_progress`, `fingerprint_mismatch`…). */
export const ERROR_META = 'idem/error';

/** What a tool handler receives besides its arguments (the SDK's `RequestHandlerExtra`). */
export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/**
 * Options of `withIdem` and {@link idempotentHandler}.
 *
 * @example
 * const options: McpIdemOptions = { idem, scope: (extra) => extra.authInfo?.extra?.tenantId as string | undefined };
 */
export interface McpIdemOptions {
  /** A `createIdem` instance: its store decides how far "once" reaches. */
  idem: Idem;
  /**
   * Who is calling: part of every record key, so two callers never share a result. Default:
   * the OAuth client (`extra.authInfo.clientId`, when present) and the session id: keys never
   * cross sessions. Without a session (stateless Streamable HTTP, stdio, in-memory) nothing tells
   * two callers apart, so a keyed call is refused (`isError`, `_meta["idem/error"]:
   * 'invalid_option'`) unless you pass `scope`. Return your tenant or user id (a non-empty
   * string, or a non-empty array of them) to dedupe across sessions; undefined falls back to the
   * default; anything else (`''`, `[]`, `null`) is an `InvalidOptionError`, never a shared scope.
   */
  scope?: (extra: ToolExtra) => string | readonly string[] | undefined;
  /**
   * The key of a call. Default: `_meta["idem/key"]`, else (with a session) the session id and
   * the JSON-RPC request id, so a re-sent request runs once; else none: the call runs unkeyed.
   */
  key?: (extra: ToolExtra, tool: string) => string | undefined;
  /** `'reject'` answers an unkeyed call with an error result instead of running it. Default `'run'`. */
  unkeyed?: 'run' | 'reject';
  /** Return true for an `isError` result that should not be stored (a retry runs the tool again). */
  releaseIf?: (result: CallToolResult) => boolean;
  /** How long a duplicate waits for the call in flight. Default `'5m'`. */
  waitTimeout?: Duration;
  ttl?: Duration;
  lease?: Duration;
}

/** The parts of a tool's registration that decide how it is wrapped. */
export interface ToolInfo {
  name: string;
  annotations?: ToolAnnotations | undefined;
  /** False for a tool registered without an input schema (its handler takes only `extra`). */
  hasArgs: boolean;
}

type Handler = (...a: unknown[]) => CallToolResult | Promise<CallToolResult>;

/**
 * Wraps one tool handler: a call with a key runs once per (scope, tool, key) and every later
 * call with that key gets the first result (`_meta["idem/replayed"]: true`); a `readOnlyHint`
 * tool passes through; inside `idem.workflow` the call is a journaled step `mcp:<tool>`.
 *
 * @example
 * server.registerTool('refund', { inputSchema: { order: z.string() } },
 *   idempotentHandler({ name: 'refund', hasArgs: true }, refund, { idem }));
 */
export function idempotentHandler<H extends Handler>(tool: ToolInfo, handler: H, options: McpIdemOptions): H {
  if (tool.annotations?.readOnlyHint === true) return handler;
  const wrapped = async (...a: unknown[]): Promise<CallToolResult> => {
    const args = tool.hasArgs ? a[0] : {};
    const extra = (tool.hasArgs ? a[1] : a[0]) as ToolExtra;
    // A keyed call is not aborted by its request's cancellation (a client timeout): it runs to
    // its end, so the retry with the key gets its result. Its signal fires when the lease is lost.
    const call = async (signal: AbortSignal, ctx?: ToolCallContext) => {
      const merged = { ...extra, signal };
      const go = () => (tool.hasArgs ? handler(args, merged) : handler(merged));
      return ctx ? withToolCall(ctx, go) : go();
    };
    try {
      const run = activeRun();
      if (run) {
        return await run.step(`mcp:${tool.name}`, (c) => call(c.signal, contextOf(c.stepId, c)), {
          input: args,
        });
      }
      const key = (options.key ?? defaultKey)(extra, tool.name);
      if (key === undefined) {
        if (options.unkeyed === 'reject') {
          throw new InvalidKeyError(`tool ${tool.name} needs a key: pass _meta["${KEY_META}"]`);
        }
        return await call(extra.signal);
      }
      const scope = [...scopeOf(options, extra, tool.name), 'mcp', tool.name];
      const r = await options.idem.execute(key, (ctx) => call(ctx.signal, contextOf(ctx.key, ctx)), {
        input: args,
        scope,
        onInProgress: 'wait',
        waitTimeout: options.waitTimeout ?? '5m',
        ...(options.ttl !== undefined && { ttl: options.ttl }),
        ...(options.lease !== undefined && { lease: options.lease }),
        releaseIf: (result) => result?.isError === true && options.releaseIf?.(result) === true,
      });
      return r.replayed ? { ...r.value, _meta: { ...r.value._meta, [REPLAYED_META]: true } } : r.value;
    } catch (error) {
      if (!isIdemError(error)) throw error; // released by idem; the SDK answers isError
      return {
        isError: true,
        content: [{ type: 'text', text: error.message }],
        _meta: { [ERROR_META]: error.code },
      };
    }
  };
  return wrapped as H;
}

function defaultKey(extra: ToolExtra): string | undefined {
  const key = extra._meta?.[KEY_META];
  if (key !== undefined) {
    if (typeof key !== 'string') throw new InvalidKeyError(`_meta["${KEY_META}"] must be a string`);
    return key;
  }
  if (extra.sessionId === undefined) return undefined;
  return `rpc:${extra.sessionId}:${String(extra.requestId)}`;
}

/**
 * The caller's scope. Default: the OAuth client and the session. A client id names an
 * application that many users may share, so it alone is no tenant; a session never spans two
 * callers. Without a session there is no caller identity to scope by: refused unless the app
 * passes `scope`. A hook's answer must be a non-empty string or non-empty array of them.
 */
function scopeOf(options: McpIdemOptions, extra: ToolExtra, tool: string): string[] {
  const scope: unknown = options.scope?.(extra);
  if (scope === undefined) {
    if (typeof extra.sessionId !== 'string' || extra.sessionId === '') {
      throw new InvalidOptionError(
        `tool ${tool}: a keyed call without a session has no caller identity (stateless HTTP, stdio, in-memory); pass withIdem's scope option (your user or tenant id) so callers never share a key`,
      );
    }
    const client = extra.authInfo?.clientId;
    return typeof client === 'string' && client !== '' ? [client, extra.sessionId] : [extra.sessionId];
  }
  const parts = typeof scope === 'string' ? [scope] : Array.isArray(scope) ? scope : undefined;
  if (!parts || parts.length === 0 || !parts.every((p) => typeof p === 'string' && p !== '')) {
    throw new InvalidOptionError(
      `tool ${tool}: scope returned ${describe(scope)}; return a non-empty string or array of non-empty strings (or undefined for the default)`,
    );
  }
  return [...parts];
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value) && value.length === 0) return 'an empty array';
  if (Array.isArray(value))
    return `an array of ${value.length} (${value.map((v) => JSON.stringify(v) ?? String(v)).join(', ')})`;
  return `a ${typeof value}`;
}

function contextOf(key: string, c: Omit<ToolCallContext, 'key'>): ToolCallContext {
  return { key, downstreamKey: c.downstreamKey, attempt: c.attempt, mayHaveRun: c.mayHaveRun };
}
