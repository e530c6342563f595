/**
 * One agent process: answers support tickets, each an `idem.workflow` run holding a tool loop
 * (AI SDK `generateText`) whose model calls go through idemMiddleware and whose side-effecting
 * tools are idempotentTools (journal steps of the run). The driver SIGKILLs it at random points and starts it again
 * on the tickets it had not finished. It prints one JSON line per event.
 *
 * Run by main.ts: node --conditions=idem-source examples/agent/agent.ts <dir> <model url> <tickets json> [control]
 * `control`: the same agent without idem (plain model, plain tools keyed by their toolCallId).
 */
import { join } from 'node:path';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, tool, wrapLanguageModel } from 'ai';
import { createIdem, type WorkflowRun } from 'idem';
import { idemMiddleware, idempotentTools, isIndeterminateOutcomeError, toolCall } from 'idem/ai-sdk';
import { sqliteStore } from 'idem/sqlite';
import { z } from 'zod';
import { openLedger } from './ledger.ts';

export interface Ticket {
  id: string;
  order: string;
}

const [dir = '.', url = '', json = '[]', mode = 'idem'] = process.argv.slice(2);
const control = mode === 'control';
const tickets = JSON.parse(json) as Ticket[];
const emit = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);
const work = (ms: number) => new Promise((r) => setTimeout(r, Math.random() * ms));

const idem = createIdem({ store: sqliteStore({ path: join(dir, 'idem.db') }), lease: '1s' });
const ledger = openLedger(join(dir, 'ledger.db'));
const bare = createOpenAI({ baseURL: url, apiKey: 'sk-local' }).chat('agent-model');
const model = control ? bare : wrapLanguageModel({ model: bare, middleware: idemMiddleware({ idem }) });
/** The call's identity: idem's (stable across retries) or, without idem, the model's toolCallId. */
const identity = (toolCallId: string) => toolCall() ?? { downstreamKey: toolCallId, mayHaveRun: false };

const effects = {
  issue_refund: tool({
    description: 'Refunds an order',
    inputSchema: z.object({ order: z.string(), amount: z.number() }),
    execute: async ({ order, amount }, { toolCallId }) => {
      const call = identity(toolCallId);
      ledger.logExecution('issue_refund', order, call.mayHaveRun);
      await work(30);
      const refundId = ledger.refund(order, amount, call.downstreamKey);
      emit({ ev: 'effect', tool: 'issue_refund' });
      await work(30);
      return { refundId, order, amount };
    },
  }),
  close_ticket: tool({
    description: 'Closes a ticket',
    inputSchema: z.object({ ticket: z.string(), refundId: z.string() }),
    execute: async ({ ticket }, { toolCallId }) => {
      const call = identity(toolCallId);
      ledger.logExecution('close_ticket', ticket, call.mayHaveRun);
      await work(30);
      ledger.closeTicket(ticket, call.downstreamKey);
      emit({ ev: 'effect', tool: 'close_ticket' });
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
 * The ticket's run: one `idem.workflow` per ticket, its tool loop inside. Tools record as the
 * run's journal steps (`tool:issue_refund#1`…); model calls are keyed `<run>:step-<n>` by
 * idemMiddleware. A model call whose process was killed mid-call has an unknown outcome (it may
 * have been billed), so that step, and only that step, is retried under a derived key
 * (`<run>~retry-<k>:step-<n>`): billed again, knowingly, in a new invocation of the run. The
 * model then issues its tool call under a new toolCallId; the journal answers the tool step
 * from its record (same run, step occurrence and arguments).
 */
async function handle(ticket: Ticket) {
  if (control) return handleWithoutIdem(ticket);
  const runKey = `ticket:${ticket.id}`;
  const retries = new Map<number, number>(); // model step n -> retries
  const tools = { lookup_order, ...idempotentTools(effects, { idem }) };
  const body = async (run: WorkflowRun) => {
    const result = await generateText({
      model,
      prompt: `Support ticket ${ticket.id}: the customer asks for a refund of order ${ticket.order}.`,
      tools,
      stopWhen: stepCountIs(8),
      prepareStep: ({ stepNumber }) => {
        const k = retries.get(stepNumber + 1);
        return { providerOptions: { idem: { key: k ? `${runKey}~retry-${k}` : runKey } } };
      },
    });
    return {
      text: result.text,
      llm: result.steps.map((s) => ({
        replayed: s.providerMetadata?.idem?.replayed === true,
        tokens: s.usage.totalTokens ?? 0,
      })),
      tools: run.steps.map((s) => ({ step: s.stepId, replayed: s.replayed })),
    };
  };
  for (;;) {
    try {
      const out = await idem.workflow(runKey, body, { onInProgress: 'wait', waitTimeout: '1m' });
      for (const e of out.llm) emit({ ev: 'llm', ...e });
      for (const e of out.tools) emit({ ev: 'tool', ...e });
      emit({ ev: 'done', ticket: ticket.id, text: out.text });
      return;
    } catch (error) {
      if (!isIndeterminateOutcomeError(error)) throw error;
      const step = Number(/:step-(\d+)$/.exec(error.key)?.[1]);
      retries.set(step, (retries.get(step) ?? 0) + 1);
      emit({ ev: 'indeterminate', ticket: ticket.id, step });
    }
  }
}

/** The control: the same loop with no idem; a resumed ticket starts over. */
async function handleWithoutIdem(ticket: Ticket) {
  const result = await generateText({
    model,
    prompt: `Support ticket ${ticket.id}: the customer asks for a refund of order ${ticket.order}.`,
    tools: { lookup_order, ...effects },
    stopWhen: stepCountIs(8),
  });
  for (const s of result.steps) emit({ ev: 'llm', replayed: false, tokens: s.usage.totalTokens ?? 0 });
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
