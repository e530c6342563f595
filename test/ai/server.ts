/**
 * A local OpenAI- and Anthropic-compatible server that counts billed calls, for the real-SDK
 * tests of idem/openai and idem/anthropic. Knobs: a delay before the answer (to outlive the
 * SDK's timeout), the first N calls failing with a status (not billed), streams cut after N
 * events (billed: the provider charges for what it generated), tool calls in the answer.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Knobs {
  /** Milliseconds before the status line of every billed call. */
  delayMs: number;
  /** The next `count` billable requests answer `status` (and are not billed). */
  fail: { count: number; status: number };
  /** Streams are cut after this many events: the socket is reset, or with `cleanCut` ended cleanly. */
  cutAfterEvents?: number;
  /** Cut streams end as if complete (chunked terminator sent) but without their last events. */
  cleanCut: boolean;
  /**
   * The next `count` Anthropic streams send `message_start`, then an `overloaded_error` event, and
   * end: nothing was generated, so they are not billed.
   */
  overloadedStreams: number;
  /** Answer with a tool call instead of text. */
  toolCalls: boolean;
  /**
   * Chat completions and Responses answer with a tool call until the request carries a tool
   * result, then with text: one `generateText` tool loop, step by step.
   */
  toolsUntilResult: boolean;
  /** Milliseconds between stream events. */
  eventGapMs: number;
}

export interface TestServer {
  url: string;
  /** Billable requests received (including failed ones). */
  requests: number;
  /** Calls that produced an answer: what the provider would bill. */
  billed: number;
  /** The Idempotency-Key header of every billable request, in order. */
  keys: (string | null)[];
  /** `METHOD path key` of every other request (read-only or free endpoints). */
  unbilled: string[];
  set(knobs: Partial<Knobs>): void;
  /** Resets the counters and the knobs. */
  reset(): void;
  close(): Promise<void>;
}

const DEFAULTS: Knobs = {
  delayMs: 0,
  fail: { count: 0, status: 500 },
  toolCalls: false,
  toolsUntilResult: false,
  eventGapMs: 2,
  cleanCut: false,
  overloadedStreams: 0,
};
const BILLABLE = new Set([
  '/v1/chat/completions',
  '/v1/responses',
  '/v1/embeddings',
  '/v1/images/generations',
  '/v1/messages',
]);
const WORDS = ['The', ' answer', ' is', ' forty', '-two', '.'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startServer(): Promise<TestServer> {
  let knobs: Knobs = structuredClone(DEFAULTS);
  const state: TestServer = {
    url: '',
    requests: 0,
    billed: 0,
    keys: [],
    unbilled: [],
    set: (k) => {
      knobs = { ...knobs, ...k };
    },
    reset: () => {
      knobs = structuredClone(DEFAULTS);
      state.requests = 0;
      state.billed = 0;
      state.keys = [];
      state.unbilled = [];
    },
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };

  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const body = JSON.parse((await text(req)) || '{}');
    if (req.method !== 'POST' || !BILLABLE.has(path)) {
      state.unbilled.push(`${req.method} ${path} ${req.headers['idempotency-key'] ?? '(no key)'}`);
      if (path === '/v1/models') return json(res, 200, { object: 'list', data: [], has_more: false });
      if (path === '/v1/messages/count_tokens') return json(res, 200, { input_tokens: 10 });
      return json(res, 404, { error: { message: 'not found' } });
    }
    state.requests++;
    state.keys.push((req.headers['idempotency-key'] as string | undefined) ?? null);
    if (knobs.fail.count > 0) {
      knobs.fail = { ...knobs.fail, count: knobs.fail.count - 1 };
      return json(
        res,
        knobs.fail.status,
        { type: 'error', error: { type: 'overloaded_error', message: 'try again' } },
        { 'retry-after-ms': '10' },
      );
    }
    const n = ++state.billed;
    if (knobs.delayMs) await sleep(knobs.delayMs);
    if (res.destroyed) return;
    const answer = `${WORDS.join('')} (#${n})`;
    if (knobs.toolsUntilResult) knobs = { ...knobs, toolCalls: !hasToolResult(body) };
    switch (path) {
      case '/v1/chat/completions':
        return body.stream
          ? chatStream(res, n, body, knobs)
          : json(res, 200, chatCompletion(n, body, answer, knobs));
      case '/v1/responses':
        return body.stream
          ? responsesStream(res, n, knobs)
          : json(res, 200, response(n, answer, knobs.toolCalls));
      case '/v1/embeddings':
        return json(res, 200, {
          object: 'list',
          model: body.model,
          data: [{ object: 'embedding', index: 0, embedding: [n, 0.5] }],
          usage: { prompt_tokens: 3, total_tokens: 3 },
        });
      case '/v1/images/generations':
        return json(res, 200, {
          created: n,
          data: [{ b64_json: Buffer.from(`image #${n}`).toString('base64') }],
        });
      case '/v1/messages':
        if (body.stream && knobs.overloadedStreams > 0) {
          knobs.overloadedStreams--;
          state.billed--;
          return overloadedStream(res, n, knobs);
        }
        return body.stream ? messageStream(res, n, knobs) : json(res, 200, message(n, answer, knobs));
      default:
        return json(res, 404, { error: { message: 'not found' } });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

function chatCompletion(n: number, body: { model?: string }, answer: string, knobs: Knobs) {
  const message = knobs.toolCalls
    ? {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: `call_${n}`, type: 'function', function: { name: 'lookup', arguments: '{"q":"42"}' } },
        ],
      }
    : { role: 'assistant', content: answer };
  return {
    id: `chatcmpl-${n}`,
    object: 'chat.completion',
    created: n,
    model: body.model ?? 'test',
    choices: [{ index: 0, message, finish_reason: knobs.toolCalls ? 'tool_calls' : 'stop' }],
    usage: { prompt_tokens: 10, completion_tokens: 6, total_tokens: 16 },
  };
}

async function chatStream(res: ServerResponse, n: number, body: { model?: string }, knobs: Knobs) {
  const base = {
    id: `chatcmpl-${n}`,
    object: 'chat.completion.chunk',
    created: n,
    model: body.model ?? 'test',
  };
  const call = { index: 0, id: `call_${n}`, type: 'function', function: { name: 'lookup', arguments: '' } };
  const deltas: object[] = knobs.toolCalls
    ? [{ tool_calls: [call] }, { tool_calls: [{ index: 0, function: { arguments: '{"q":"42"}' } }] }]
    : [...WORDS, ` (#${n})`].map((w) => ({ content: w }));
  const events = deltas.map((delta) => ({ ...base, choices: [{ index: 0, delta, finish_reason: null }] }));
  events.push({
    ...base,
    choices: [{ index: 0, delta: {}, finish_reason: knobs.toolCalls ? 'tool_calls' : 'stop' }],
    usage: { prompt_tokens: 10, completion_tokens: 7, total_tokens: 17 },
  } as never);
  await sse(res, [...events.map((e) => `data: ${JSON.stringify(e)}\n\n`), 'data: [DONE]\n\n'], knobs);
}

/** True when a chat or Responses request carries a tool's result (a `tool` message, a `function_call_output`). */
function hasToolResult(body: { messages?: { role?: string }[]; input?: unknown }): boolean {
  const input = Array.isArray(body.input) ? (body.input as { type?: string }[]) : [];
  return (
    (body.messages ?? []).some((m) => m.role === 'tool') ||
    input.some((i) => i.type === 'function_call_output')
  );
}

function functionCall(n: number) {
  return {
    type: 'function_call',
    id: `fc_${n}`,
    call_id: `call_${n}`,
    name: 'lookup',
    arguments: '{"q":"42"}',
    status: 'completed',
  };
}

function response(n: number, answer: string, toolCalls = false) {
  return {
    id: `resp_${n}`,
    object: 'response',
    created_at: n,
    status: 'completed',
    model: 'test',
    output: [
      toolCalls
        ? functionCall(n)
        : {
            type: 'message',
            id: `msg_${n}`,
            role: 'assistant',
            status: 'completed',
            content: [{ type: 'output_text', text: answer, annotations: [] }],
          },
    ],
    usage: { input_tokens: 10, output_tokens: 7, total_tokens: 17 },
  };
}

async function responsesStream(res: ServerResponse, n: number, knobs: Knobs) {
  const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const text = `${WORDS.join('')} (#${n})`;
  const created = { id: `resp_${n}`, created_at: n, model: 'test', status: 'in_progress', output: [] };
  const message = { type: 'message', id: `msg_${n}`, role: 'assistant', status: 'in_progress', content: [] };
  const call = functionCall(n);
  const body = knobs.toolCalls
    ? [
        ev('response.output_item.added', {
          output_index: 0,
          item: { ...call, arguments: '', status: 'in_progress' },
        }),
        ev('response.function_call_arguments.delta', {
          item_id: call.id,
          output_index: 0,
          delta: call.arguments,
        }),
        ev('response.output_item.done', { output_index: 0, item: call }),
      ]
    : [
        ev('response.output_item.added', { output_index: 0, item: message }),
        ...[...WORDS, ` (#${n})`].map((w, i) =>
          ev('response.output_text.delta', {
            item_id: `msg_${n}`,
            output_index: 0,
            content_index: 0,
            delta: w,
            sequence_number: i,
          }),
        ),
        ev('response.output_item.done', { output_index: 0, item: { ...message, status: 'completed' } }),
      ];
  await sse(
    res,
    [
      ev('response.created', { response: created }),
      ...body,
      ev('response.completed', { response: response(n, text, knobs.toolCalls) }),
    ],
    knobs,
  );
}

function message(n: number, answer: string, knobs: Knobs) {
  const content = knobs.toolCalls
    ? [{ type: 'tool_use', id: `toolu_${n}`, name: 'lookup', input: { q: '42' } }]
    : [{ type: 'text', text: answer }];
  return {
    id: `msg_${n}`,
    type: 'message',
    role: 'assistant',
    model: 'claude-test',
    content,
    stop_reason: knobs.toolCalls ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 10, output_tokens: 7 },
  };
}

async function messageStream(res: ServerResponse, n: number, knobs: Knobs) {
  const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const start = {
    ...message(n, '', knobs),
    content: [],
    stop_reason: null,
    usage: { input_tokens: 10, output_tokens: 1 },
  };
  const block = knobs.toolCalls
    ? [
        ev('content_block_start', {
          index: 0,
          content_block: { type: 'tool_use', id: `toolu_${n}`, name: 'lookup', input: {} },
        }),
        ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '{"q":' } }),
        ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '"42"}' } }),
      ]
    : [
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        ...[...WORDS, ` (#${n})`].map((w) =>
          ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }),
        ),
      ];
  await sse(
    res,
    [
      ev('message_start', { message: start }),
      ...block,
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', {
        delta: { stop_reason: knobs.toolCalls ? 'tool_use' : 'end_turn', stop_sequence: null },
        usage: { output_tokens: 7 },
      }),
      ev('message_stop', {}),
    ],
    knobs,
  );
}

async function overloadedStream(res: ServerResponse, n: number, knobs: Knobs) {
  const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
  const start = {
    ...message(n, '', knobs),
    content: [],
    stop_reason: null,
    usage: { input_tokens: 10, output_tokens: 0 },
  };
  await sse(
    res,
    [
      ev('message_start', { message: start }),
      ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } }),
    ],
    knobs,
  );
}

async function sse(res: ServerResponse, events: string[], knobs: Knobs) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const [i, event] of events.entries()) {
    if (knobs.cutAfterEvents !== undefined && i >= knobs.cutAfterEvents) {
      if (knobs.cleanCut) res.end();
      else res.destroy();
      return;
    }
    res.write(event);
    await sleep(knobs.eventGapMs);
    if (res.destroyed) return;
  }
  res.end();
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

async function text(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
