/**
 * A model stream read to its end into a recording, judged whole or cut, and the streams a
 * caller reads: the live recording or a stored part list, marked, ending with
 * `IndeterminateOutcomeError` when the upstream cut it.
 *
 * @module
 */
import { IndeterminateOutcomeError } from '../errors.ts';
import { REPLAYED_HEADER } from '../respond.ts';
import { keptHeaders, type ModelOutcome, marked, replayedPart, storedPart } from './outcome.ts';
import { createPartsRecording, type PartsRecording } from './parts.ts';
import type { StreamPart, StreamResult } from './types.ts';

/** Parts that carry no generated content. */
const FRAMING = new Set(['stream-start', 'response-metadata', 'finish', 'ping', 'raw', 'error']);

/**
 * Reads `stream` to its end into `recording` and answers the outcome to store. Whole: it closed
 * normally after a `finish` part whose reason is not `interrupted` (the AI SDK's mark for a
 * stream that ended before the provider said it finished). Cut: anything else; the recording
 * then fails with `IndeterminateOutcomeError` in place of the interrupted `finish`.
 *
 * @example
 * const outcome = await recordStream(key, (await model.doStream(params)).stream, recording, headers);
 */
export async function recordStream(
  key: string,
  stream: ReadableStream<StreamPart>,
  recording: PartsRecording<StreamPart>,
  headers: Record<string, string>,
): Promise<ModelOutcome> {
  const reader = stream.getReader();
  let finish: StreamPart | undefined;
  let cause: unknown;
  let cut = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.type === 'finish') finish = value;
      else recording.push(value);
    }
  } catch (error) {
    cause = error;
    cut = true;
  }
  if (finish?.type !== 'finish' || finish.finishReason.unified === 'interrupted') cut = true;
  const parts = recording.parts().map(storedPart);
  const content = parts.some((p) => !FRAMING.has(p.type));
  const unbilled = !content && parts.some((p) => p.type === 'error');
  if (cut && !unbilled) {
    recording.fail(
      new IndeterminateOutcomeError(key, parts.length, { cause, reason: cutReason(parts.length) }),
    );
  } else {
    if (finish) recording.push(finish);
    recording.end();
  }
  return {
    kind: 'stream',
    parts: finish && !cut ? [...parts, storedPart(finish)] : parts,
    complete: !cut,
    ...(unbilled && { unbilled }),
    headers,
  };
}

/**
 * The caller's `doStream` result for a live call or a stored stream, with the replay marks:
 * `providerMetadata.idem` on the `finish` part and the `idempotent-replayed` header.
 *
 * @example
 * return streamResult(key, head.recording.follow(signal, head.stored), head.headers, replayed);
 */
export function streamResult(
  key: string,
  parts: ReadableStream<StreamPart>,
  headers: Record<string, string>,
  replayed: boolean,
): StreamResult {
  const mark = new TransformStream<StreamPart, StreamPart>({
    transform(part, controller) {
      controller.enqueue(
        part.type === 'finish'
          ? { ...part, providerMetadata: marked(part.providerMetadata, key, replayed) }
          : part,
      );
    },
  });
  return {
    stream: parts.pipeThrough(mark),
    response: { headers: replayed ? { ...headers, [REPLAYED_HEADER]: 'true' } : headers },
  };
}

/**
 * The parts of a stored stream as a fresh recording's stream: every part from the first, then
 * the end, or `IndeterminateOutcomeError` for a cut stream.
 *
 * @example
 * const parts = storedStream(key, outcome, signal);
 */
export function storedStream(
  key: string,
  outcome: Extract<ModelOutcome, { kind: 'stream' }>,
  signal?: AbortSignal,
): ReadableStream<StreamPart> {
  const recording = createPartsRecording<StreamPart>();
  for (const part of outcome.parts) recording.push(replayedPart(part));
  if (outcome.complete || outcome.unbilled) recording.end();
  else {
    const n = outcome.parts.length;
    recording.fail(new IndeterminateOutcomeError(key, n, { reason: cutReason(n) }));
  }
  return recording.follow(signal);
}

/** The response headers a stream keeps. */
export const streamHeaders = (result: StreamResult): Record<string, string> =>
  keptHeaders(result.response?.headers);

const cutReason = (parts: number) => `the upstream cut the model stream after ${parts} parts`;
