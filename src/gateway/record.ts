/**
 * The action the engine runs for the holder of a key: forward the request, stream the
 * response to the client as it arrives, record it, and resolve with what to store.
 *
 * ```
 * upstream ──head──▶ client (chunked: the end is held until the outcome is stored)
 *          ──chunk─▶ client, recording, attach joiners
 *          ──end───▶ resolve StoredResponse ─▶ engine stores ─▶ handler ends the client
 * ```
 *
 * - The client leaving does not stop the upstream: the response is recorded to the end, so
 *   the retry gets it whole.
 * - A body over `maxResponseBytes` keeps streaming to the client but is not stored (the
 *   record says `omitted`); from then on a slow client slows the upstream.
 * - Failures map to the outcome policy (§6.5): before a byte was sent → release and 502
 *   `upstream-unavailable`; a timeout after sending → 504 `upstream-timeout`; a reset after
 *   sending or mid-body → 502 `indeterminate-outcome`. The last three are stored unless the
 *   route's `outcomes` release them. A response broken mid-body is never stored truncated.
 *
 * @module
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { ActionContext } from '../core/engine.ts';
import { echoesKey } from '../http/headers.ts';
import type { Flight } from './flight.ts';
import { type LlmRequestFacts, responseFacts } from './llm.ts';
import type { GatewayMetrics } from './metrics.ts';
import {
  clientResponseHeaders,
  type ForwardResult,
  problem,
  type StoredResponse,
  storedHeaders,
} from './respond.ts';
import type { CompiledRoute } from './routes.ts';
import type { ForwardRequest, Upstream } from './upstream.ts';

/** What the handler needs to know about the holder's live response. */
export interface LiveState {
  /** The upstream's head went to the client: the handler only ends (or destroys) it. */
  headWritten: boolean;
  /** The upstream broke off mid-body: the client's response must be destroyed, not ended. */
  broken: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Builds the action for one request.
 *
 * @example
 * const state = { headWritten: false, broken: false };
 * await idem.execute(key, recordingAction(deps, route, request, res, state, flight), options);
 */
export function recordingAction(
  deps: { upstream: Upstream; metrics: GatewayMetrics; downstreamKeyHeader: string | false },
  route: CompiledRoute,
  request: ForwardRequest,
  res: ServerResponse,
  state: LiveState,
  flight: Flight | undefined,
  clientKey: string,
  facts?: LlmRequestFacts,
) {
  return (ctx: ActionContext): Promise<ForwardResult> | ForwardResult => {
    if (ctx.mayHaveRun && route.onAbandoned === 'fail') {
      return problem(
        'indeterminate-outcome',
        'an earlier attempt forwarded this request and stopped before its outcome was stored, so the upstream may have executed it; use a new key to run it again',
      );
    }
    if (deps.downstreamKeyHeader) request.headers.push(deps.downstreamKeyHeader, ctx.downstreamKey);
    return new Promise<ForwardResult>((resolve) => {
      let chunks: Buffer[] | undefined = [];
      let bytes = 0;
      let status = 0;
      let stored: [string, string][] = [];
      let release = false;
      let paused = false;
      let control: { pause(): void; resume(): void } | undefined;
      const resume = () => {
        if (paused) {
          paused = false;
          control?.resume();
        }
      };
      res.on('drain', resume);
      res.once('close', resume);

      deps.upstream.forward(request, {
        onStart(s, headers, c) {
          status = s;
          control = c;
          release = route.outcome(s) === 'release';
          // the upstream echoing the derived key: the client only ever sees its own key
          const own = withKeyEcho(headers, ctx.downstreamKey, clientKey);
          stored = storedHeaders(own, route.replayHeaders);
          const clientHeaders = clientResponseHeaders(own, true);
          // stored and final: an SDK must not retry it (a replay says the same)
          if (!release && s >= 500) for (const name of route.marks.noRetry) clientHeaders[name] = 'false';
          if (!res.destroyed) res.writeHead(s, clientHeaders);
          state.headWritten = true;
          // joiners see what a replay shows: the allow-listed headers, never the holder's cookies
          flight?.start({ status: s, headers: joinerHeaders(stored, release, s, route), release });
        },
        onData(chunk) {
          bytes += chunk.byteLength;
          if (chunks) {
            chunks.push(chunk);
            if (bytes > route.maxResponseBytes) {
              chunks = undefined;
              flight?.drop();
            }
          }
          flight?.push(chunk);
          if (!res.destroyed && !res.write(chunk) && !chunks && !paused) {
            paused = true;
            control?.pause();
          }
        },
        onEnd() {
          const result: ForwardResult = {
            status,
            headers: stored,
            bytes,
            ...bodyOf(chunks, bytes),
            ...(release && { release }),
          };
          resolve(route.llm && !release ? llmOutcome(route.llm, result, state, facts) : result);
        },
        onError(error, sent, timeout) {
          deps.metrics.upstreamError(sent ? 'after_send' : 'before_send');
          const detail = `${(error as { code?: string }).code ?? error.name}: ${error.message}`;
          if (!sent) {
            resolve({ ...problem('upstream-unavailable', detail), release: true });
            return;
          }
          if (state.headWritten) state.broken = true;
          const p: StoredResponse = problem(timeout ? 'upstream-timeout' : 'indeterminate-outcome', detail);
          // on an LLM route the provider may have billed what it began to send: never released
          resolve(!route.llm && route.outcome(p.status) === 'release' ? { ...p, release: true } : p);
        },
      });
    });
  };
}

/**
 * An LLM route's outcome: a stream that ended without the provider's last event is broken for
 * the client and stored as `indeterminate-outcome` (never as complete); one that failed before
 * generating anything was not billed and is released; otherwise the usage is kept for savings.
 */
function llmOutcome(
  provider: NonNullable<CompiledRoute['llm']>,
  result: ForwardResult,
  state: LiveState,
  facts: LlmRequestFacts | undefined,
): ForwardResult {
  if (result.body === null) return result; // over maxResponseBytes: stored omitted, as any route
  const text = typeof result.body === 'string' ? result.body : Buffer.from(result.body).toString('utf8');
  const contentType = result.headers.find(([name]) => name === 'content-type')?.[1];
  const read = responseFacts(provider, contentType, text);
  if (read.unbilled) return { ...result, release: true };
  if (!read.complete) {
    if (state.headWritten) state.broken = true;
    return problem(
      'indeterminate-outcome',
      'the provider closed the stream before its last event: the call was billed, its answer is incomplete; use a new key to run it again',
    );
  }
  const model = facts?.model;
  return { ...result, llm: { ...(model && { model }), ...(read.usage && { usage: read.usage }) } };
}

/** `headers` with every value that echoes `downstreamKey` replaced by the client's key. */
function withKeyEcho(
  headers: IncomingHttpHeaders,
  downstreamKey: string,
  clientKey: string,
): IncomingHttpHeaders {
  let out: IncomingHttpHeaders | undefined;
  for (const name in headers) {
    const value = headers[name];
    const echoes = Array.isArray(value)
      ? value.some((v) => echoesKey(v, downstreamKey))
      : value !== undefined && echoesKey(value, downstreamKey);
    if (!echoes) continue;
    out ??= { ...headers };
    out[name] = Array.isArray(value)
      ? value.map((v) => (echoesKey(v, downstreamKey) ? clientKey : v))
      : clientKey;
  }
  return out ?? headers;
}

/** The head an attach joiner gets: the stored (allow-listed) headers and the replay markers. */
function joinerHeaders(
  stored: readonly [string, string][],
  release: boolean,
  status: number,
  route: CompiledRoute,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of stored) {
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  if (!release && status >= 500) for (const name of route.marks.noRetry) out[name] = 'false';
  if (!release) for (const name of route.marks.replayed) out[name] = 'true';
  return out;
}

function bodyOf(chunks: Buffer[] | undefined, bytes: number): Pick<StoredResponse, 'body' | 'omitted'> {
  if (!chunks) return { body: null, omitted: true };
  const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, bytes);
  try {
    return { body: utf8.decode(buf) };
  } catch {
    return { body: new Uint8Array(buf) }; // a copy: devalue stores a view's whole ArrayBuffer
  }
}
