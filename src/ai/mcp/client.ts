/**
 * The client side: a tool call that carries a key in `_meta["idem/key"]` and is retried with
 * the same key after a timeout, a dropped connection or an answer that the call is in flight.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolRequest, CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { InvalidOptionError } from '../../core/errors.ts';
import { ERROR_META, KEY_META } from './handler.ts';

/** idem error codes after which the same call is tried again (the key is free or about to be). */
const RETRY_CODES = new Set(['in_progress', 'store_unavailable']);

/**
 * Options of {@link callToolOnce}.
 *
 * @example
 * const options: CallToolOnceOptions = { key: `ticket-${id}:refund`, attempts: 5, timeout: 10_000 };
 */
export interface CallToolOnceOptions extends RequestOptions {
  /** The call's key. Default: a random UUID, kept for every retry of this call. */
  key?: string;
  /** Tries in all. Default 3. */
  attempts?: number;
  /** Milliseconds before the second try, doubled for each next one. Default 100. */
  backoffMs?: number;
}

/**
 * Calls a tool with a key and retries it with the same key: thrown errors (timeout, transport)
 * and idem's own `in_progress` / `store_unavailable` answers are retried; a server wrapped with
 * `withIdem` runs the tool once and answers every try with its result.
 *
 * @example
 * const result = await callToolOnce(client, { name: 'refund', arguments: { order: 'A-1' } }, { key: 'refund:A-1' });
 */
export async function callToolOnce(
  client: Pick<Client, 'callTool'>,
  params: CallToolRequest['params'],
  options: CallToolOnceOptions = {},
): Promise<CallToolResult> {
  const { key = randomUUID(), attempts = 3, backoffMs = 100, ...request } = options;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new InvalidOptionError('callToolOnce: attempts must be a positive integer');
  }
  const call = { ...params, _meta: { ...params._meta, [KEY_META]: key } };
  for (let attempt = 1; ; attempt++) {
    try {
      const result = (await client.callTool(call, undefined, request)) as CallToolResult;
      const code = result._meta?.[ERROR_META];
      if (typeof code !== 'string' || !RETRY_CODES.has(code) || attempt >= attempts) return result;
    } catch (error) {
      if (attempt >= attempts || request.signal?.aborted) throw error;
    }
    await new Promise((r) => setTimeout(r, backoffMs * 2 ** (attempt - 1)));
  }
}
