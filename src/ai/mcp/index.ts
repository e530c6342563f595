/**
 * `idem/mcp`: MCP server tools (`@modelcontextprotocol/sdk`) that act once per key.
 *
 * - The key: `params._meta["idem/key"]` from the client (`callToolOnce` sets it), else the
 *   session id + JSON-RPC request id (a re-sent request), else none (the call runs unkeyed, or
 *   is refused with `unkeyed: 'reject'`). Inside `idem.workflow`, the journal keys the call.
 * - The scope: the OAuth client and the session; without a session (stateless HTTP, stdio,
 *   in-memory) a keyed call is refused unless you pass `scope` (override with `scope`, e.g. your user id, to
 *   dedupe across sessions), plus the tool name: a key never reaches another caller's result.
 * - `readOnlyHint` tools pass through; `idempotentHint` tools are still deduplicated.
 * - Results (`isError` ones too) are stored and replayed; a thrown error releases the key.
 *
 * @module
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { type McpIdemOptions, type ToolInfo, idempotentHandler as wrapHandler } from './handler.ts';
import { checkMcpOptions } from './options.ts';

type ToolConfig = { annotations?: ToolInfo['annotations']; inputSchema?: unknown };

export { type ToolCallContext, toolCall } from '../tool-context.ts';
export { type CallToolOnceOptions, callToolOnce } from './client.ts';
export {
  ERROR_META,
  KEY_META,
  type McpIdemOptions,
  REPLAYED_META,
  type ToolExtra,
  type ToolInfo,
} from './handler.ts';

/**
 * Makes every tool registered on `server` afterwards (`server.registerTool`) act once per key.
 * Register tools after calling it; the server is returned for chaining.
 *
 * @example
 * import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
 * import { createIdem } from 'idem';
 * import { withIdem } from 'idem/mcp';
 * import { sqliteStore } from 'idem/sqlite';
 *
 * const idem = createIdem({ store: sqliteStore({ path: '.idem/idem.db' }) });
 * const server = withIdem(new McpServer({ name: 'shop', version: '1.0.0' }), { idem });
 * server.registerTool('refund', { inputSchema: { order: z.string() } }, async ({ order }) => refund(order));
 */
export function withIdem<S extends McpServer>(server: S, options: McpIdemOptions): S {
  checkMcpOptions(options, 'withIdem');
  const register = server.registerTool.bind(server) as (...a: unknown[]) => unknown;
  const registerTool = (name: string, config: ToolConfig | undefined, cb: never) => {
    const info = { name, annotations: config?.annotations, hasArgs: config?.inputSchema !== undefined };
    return register(name, config, wrapHandler(info, cb as (...a: unknown[]) => never, options));
  };
  server.registerTool = registerTool as McpServer['registerTool'];
  return server;
}

/**
 * Wraps one tool handler (for servers built without `withIdem`, or the low-level `Server`).
 *
 * @example
 * server.registerTool('refund', config, idempotentHandler({ name: 'refund', hasArgs: true }, refund, { idem }));
 */
export function idempotentHandler<H extends (...a: never[]) => unknown>(
  tool: ToolInfo,
  handler: H,
  options: McpIdemOptions,
): H {
  checkMcpOptions(options, 'idempotentHandler');
  return wrapHandler(tool, handler as never, options) as H;
}
