/**
 * The providers' wire facts that decide whether an interrupted stream was billed: a stream that
 * failed before generating anything is released (retried with the same key at no cost), one that
 * generated output is not (a retry would bill again, so its outcome is indeterminate).
 */
import { describe, expect, it } from 'vitest';
import { ANTHROPIC, OPENAI } from '../../src/ai/providers.ts';

const chunk = (delta: object) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta }] })}\n\n`;
const chatError = `data: ${JSON.stringify({ error: { message: 'The server had an error', type: 'server_error' } })}\n\n`;

describe('OpenAI streams', () => {
  it('chat completions: an error chunk before any content is not billed', () => {
    expect(OPENAI.streamUnbilled?.(chatError)).toBe(true);
    expect(OPENAI.streamUnbilled?.(chunk({ role: 'assistant', content: '' }) + chatError)).toBe(true);
  });
  it('chat completions: an error after content or a tool call was generated is billed', () => {
    expect(
      OPENAI.streamUnbilled?.(
        chunk({ role: 'assistant', content: '' }) + chunk({ content: 'Hel' }) + chatError,
      ),
    ).toBe(false);
    expect(
      OPENAI.streamUnbilled?.(
        chunk({ tool_calls: [{ index: 0, id: 't1', function: { name: 'f', arguments: '' } }] }) + chatError,
      ),
    ).toBe(false);
  });
  it('a chat stream cut without an error chunk is not judged unbilled; [DONE] completes it', () => {
    expect(OPENAI.streamUnbilled?.(chunk({ content: 'Hi' }))).toBe(false);
    expect(OPENAI.streamComplete(`${chunk({ content: 'Hi' })}data: [DONE]\n\n`)).toBe(true);
    expect(OPENAI.streamComplete(chunk({ content: 'Hi' }))).toBe(false);
  });
  it('Responses: an error event before any text delta is not billed, after one it is', () => {
    const err = 'event: error\ndata: {"type":"error","message":"overloaded"}\n\n';
    const delta =
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n';
    expect(OPENAI.streamUnbilled?.(err)).toBe(true);
    expect(OPENAI.streamUnbilled?.(delta + err)).toBe(false);
  });
});

describe('Anthropic streams', () => {
  it('overloaded_error before any content block delta is not billed; after one it is', () => {
    const start = 'event: message_start\ndata: {"type":"message_start"}\n\n';
    const err = 'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n';
    const delta = 'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n';
    expect(ANTHROPIC.streamUnbilled?.(start + err)).toBe(true);
    expect(ANTHROPIC.streamUnbilled?.(start + delta + err)).toBe(false);
    expect(ANTHROPIC.streamComplete(`${start + delta}event: message_stop\ndata: {}\n\n`)).toBe(true);
  });
});
