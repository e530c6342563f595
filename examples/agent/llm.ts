/**
 * A scripted OpenAI-compatible chat completions server: the "model" of the example agent. It
 * reads the conversation and asks for the next tool (lookup_order → issue_refund →
 * close_ticket), then answers in text. Every call it answers is billed and its tokens counted;
 * each tool call gets a fresh random id, as a real model's would.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Message {
  role: string;
  content?: string | null;
}

export async function startModel(latencyMs: () => number) {
  const bill = { calls: 0, tokens: 0 };
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const { messages = [] } = JSON.parse(body || '{}') as { messages?: Message[] };
    await new Promise((r) => setTimeout(r, latencyMs()));
    if (res.destroyed) return;
    const usage = { prompt_tokens: Math.ceil(body.length / 4), completion_tokens: 24 };
    bill.calls++;
    bill.tokens += usage.prompt_tokens + usage.completion_tokens;
    const message = next(messages);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: `chatcmpl-${randomUUID()}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: 'agent-model',
        choices: [{ index: 0, message, finish_reason: message.tool_calls ? 'tool_calls' : 'stop' }],
        usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    bill,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The next assistant message: one tool call per turn, then the closing text. */
function next(messages: Message[]): { role: string; content: string | null; tool_calls?: object[] } {
  const ask = messages.find((m) => m.role === 'user')?.content ?? '';
  const ticket = /ticket (T-\d+)/.exec(ask)?.[1] ?? 'T-?';
  const order = /order (O-\d+)/.exec(ask)?.[1] ?? 'O-?';
  const results = messages.filter((m) => m.role === 'tool').map((m) => JSON.parse(m.content ?? '{}'));
  const call = (name: string, args: object) => ({
    role: 'assistant',
    content: null,
    tool_calls: [
      { id: `call_${randomUUID()}`, type: 'function', function: { name, arguments: JSON.stringify(args) } },
    ],
  });
  if (results.length === 0) return call('lookup_order', { order });
  if (results.length === 1) return call('issue_refund', { order, amount: results[0].amount });
  if (results.length === 2) return call('close_ticket', { ticket, refundId: results[1].refundId });
  return { role: 'assistant', content: `Ticket ${ticket} closed: order ${order} refunded.` };
}
