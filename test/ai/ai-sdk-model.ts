/** The bare `@ai-sdk/openai` models of the idem/ai-sdk tests (no vitest: child processes load it too). */
import { createOpenAI } from '@ai-sdk/openai';

/** Chat completions (`openai.chat(model)`) or the Responses API (`openai(model)`, the default). */
export type Api = 'chat' | 'responses';
export const ANSWER = 'The answer is forty-two. (#1)';
/** The server's answer to its n-th billed call. */
export const nth = (n: number) => ANSWER.replace('#1', `#${n}`);

/** The bare provider model for `api` against the local server at `baseURL`. */
export function bareModel(baseURL: string, api: Api, apiKey = 'sk-test') {
  const openai = createOpenAI({ apiKey, baseURL: `${baseURL}/v1` });
  return api === 'chat' ? openai.chat('gpt-test') : openai('gpt-test');
}
