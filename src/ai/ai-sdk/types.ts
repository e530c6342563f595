/**
 * The AI SDK's language-model types, read off the installed `ai` package's
 * `LanguageModelMiddleware` (type imports only: nothing from `ai` is loaded for them).
 *
 * @module
 */
import type { LanguageModelMiddleware } from 'ai';

type WrapGenerate = NonNullable<LanguageModelMiddleware['wrapGenerate']>;
type WrapStream = NonNullable<LanguageModelMiddleware['wrapStream']>;

/** The options of one `doGenerate` / `doStream` call (prompt, tools, settings, headers…). */
export type CallParams = Parameters<WrapGenerate>[0]['params'];
/** The language model a middleware wraps. */
export type Model = Parameters<WrapGenerate>[0]['model'];
/** What `doGenerate` answers. */
export type GenerateResult = Awaited<ReturnType<WrapGenerate>>;
/** What `doStream` answers. */
export type StreamResult = Awaited<ReturnType<WrapStream>>;
/** One part of a model stream (`text-delta`, `tool-call`, `finish`…). */
export type StreamPart = StreamResult['stream'] extends ReadableStream<infer P> ? P : never;
/** Which of the two model calls. */
export type CallType = 'generate' | 'stream';
