/**
 * One agent process: answers support tickets with a tool loop (AI SDK `generateText`) whose
 * model calls go through idemMiddleware and whose side-effecting tools are idempotentTools,
 * all keyed by the ticket's run. The driver SIGKILLs it at random points and starts it again
 * on the tickets it had not finished. It prints one JSON line per event.
 *
 * Run by main.ts: node --conditions=idem-source examples/agent/agent.ts <dir> <model url> <tickets json>
 */
import { join } from 'node:path';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, tool, wrapLanguageModel } from 'ai';
import { createIdem } from 'idem';
import { idemMiddleware, idempotentTools, isIndeterminateOutcomeError, toolCall } from 'idem/ai-sdk';
import { sqliteStore } from 'idem/sqlite';
import { z } from 'zod';
import { openLedger } from './ledger.ts';

export interface Ticket {
  id: string;
  order: string;
}

const [dir = '.', url = '', json = '[]'] = process.argv.slice(2);
const tickets = JSON.parse(json) as Ticket[];
const emit = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);
const work = (ms: number) => new Promise((r) => setTimeout(r, Math.random() * ms));

const idem = createIdem({ store: sqliteStore({ path: join(dir, 'idem.db') }), lease: '1s' });
const ledger = openLedger(join(dir, 'ledger.db'));
const model = wrapLanguageModel({
  model: createOpenAI({ baseURL: url, apiKey: 'sk-local' }).chat('agent-model'),
  middleware: idemMiddleware({ idem }),
});
/** Tool calls whose body ran in this process (the others were answered from their record). */
const ran = new Set<string>();

const effects = {
  issue_refund: tool({
    description: 'Refunds an order',
    inputSchema: z.object({ order: z.string(), amount: z.number() }),
    execute: async ({ order, amount }, { toolCallId }) => {
      const call = toolCall()!;
      ran.add(toolCallId);
      ledger.logExecution('issue_refund', order, call.mayHaveRun);
      await work(30);
      const refundId = ledger.refund(order, amount, call.downstreamKey);
      await work(30);
      return { refundId, order, amount };
    },
  }),
  close_ticket: tool({
    description: 'Closes a ticket',
    inputSchema: z.object({ ticket: z.string(), refundId: z.string() }),
    execute: async ({ ticket }, { toolCallId }) => {
      const call = toolCall()!;
      ran.add(toolCallId);
      ledger.logExecution('close_ticket', ticket, call.mayHaveRun);
      await work(30);
      ledger.closeTicket(ticket, call.downstreamKey);
      return { ticket, closed: true };
    },
  }),
};
/** Read-only: not wrapped, it runs again on a resume and changes nothing. */
const lookup_order = tool({
  description: 'Looks an order up',
  inputSchema: z.object({ order: z.string() }),
  execute: async ({ order }) => ({ order, amount: 10 + Number(order.slice(2)), status: 'delivered' }),
});

/**
 * The ticket's tool loop. Each model call is keyed `<run>:step-<n>`; a call whose process was
 * killed mid-call has an unknown outcome (it may have been billed), so the loop retries that
 * step, and only that step, under a derived key (`<run>~retry-<k>:step-<n>`): billed again,
 * knowingly. The model then issues its tool call under a new toolCallId, and idempotentTool
 * answers it from the first call's record (same run, step, tool and arguments).
 */
async function handle(ticket: Ticket) {
  const run = `ticket:${ticket.id}`;
  const retries = new Map<number, number>(); // step n -> retries
  const tools = { lookup_order, ...idempotentTools(effects, { idem, run, waitTimeout: '1m' }) };
  let result: Awaited<ReturnType<typeof generateText<typeof tools>>>;
  for (;;) {
    try {
      result = await generateText({
        model,
        prompt: `Support ticket ${ticket.id}: the customer asks for a refund of order ${ticket.order}.`,
        tools,
        stopWhen: stepCountIs(8),
        prepareStep: ({ stepNumber }) => {
          const k = retries.get(stepNumber + 1);
          return { providerOptions: { idem: { key: k ? `${run}~retry-${k}` : run } } };
        },
      });
      break;
    } catch (error) {
      if (!isIndeterminateOutcomeError(error)) throw error;
      const step = Number(/:step-(\d+)$/.exec(error.key)?.[1]);
      retries.set(step, (retries.get(step) ?? 0) + 1);
      emit({ ev: 'indeterminate', ticket: ticket.id, step });
    }
  }
  for (const step of result.steps) {
    emit({
      ev: 'llm',
      replayed: step.providerMetadata?.idem?.replayed === true,
      tokens: step.usage.totalTokens,
    });
    for (const r of step.toolResults) {
      if (r.toolName !== 'lookup_order')
        emit({ ev: 'tool', tool: r.toolName, replayed: !ran.has(r.toolCallId) });
    }
  }
  emit({ ev: 'done', ticket: ticket.id, text: result.text });
}

emit({ ev: 'ready' });
const queue = [...tickets];
const worker = async () => {
  for (let t = queue.shift(); t; t = queue.shift()) await handle(t);
};
await Promise.all([worker(), worker()]); // two tickets at a time
ledger.close();
await idem.close();
