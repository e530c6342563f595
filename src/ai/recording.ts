/**
 * A response body recorded as it arrives, readable from the start by any number of followers:
 * the caller that started the call and every duplicate that joins it in this process. Reading
 * the upstream never depends on a follower: one that stops reading or goes away does not slow
 * or stop the recording.
 *
 * @module
 */
import { concatBytes } from '../http/body.ts';

/** The recording of one upstream body. */
export interface Recording {
  /** Appends a chunk and wakes the followers. */
  push(chunk: Uint8Array): void;
  /** The body ended normally. */
  end(): void;
  /** The body was cut: followers get `error` after the bytes recorded so far. */
  fail(error: unknown): void;
  /** Every byte recorded so far, as one array. */
  bytes(): Uint8Array;
  /**
   * A stream of the whole body from its first byte; `signal` ends it with the signal's reason.
   * After the last byte, the stream stays open until `holdCloseUntil` settles (the outcome is
   * stored), so a caller that has read everything and exits cannot leave the key unrecorded.
   */
  follow(signal?: AbortSignal | null, holdCloseUntil?: Promise<unknown>): ReadableStream<Uint8Array>;
}

/**
 * A new, empty recording.
 *
 * @example
 * const rec = createRecording();
 * const a = rec.follow(); rec.push(chunk); rec.end(); // a yields chunk, then closes
 */
export function createRecording(): Recording {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let state: { done: boolean; failed?: boolean; error?: unknown } = { done: false };
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
    waiters.clear();
  };
  return {
    push(chunk) {
      if (state.done) return;
      chunks.push(chunk);
      size += chunk.byteLength;
      wake();
    },
    end() {
      if (state.done) return;
      state = { done: true };
      wake();
    },
    fail(error) {
      if (state.done) return;
      state = { done: true, error, failed: true };
      wake();
    },
    bytes: () => concatBytes(chunks, size),
    follow(signal, holdCloseUntil) {
      let next = 0;
      let cancelled = false;
      let stop: (() => void) | undefined;
      return new ReadableStream<Uint8Array>({
        start(controller) {
          if (!signal) return;
          const onAbort = () => {
            try {
              controller.error(signal.reason);
            } catch {
              // already closed
            }
            stop?.();
          };
          if (signal.aborted) onAbort();
          else signal.addEventListener('abort', onAbort, { once: true });
        },
        async pull(controller) {
          while (next >= chunks.length && !state.done) {
            await new Promise<void>((resolve) => {
              stop = resolve;
              waiters.add(resolve);
            });
            if (cancelled || signal?.aborted) return;
          }
          if (next < chunks.length) {
            controller.enqueue(chunks[next++]!);
            return;
          }
          if (state.failed) controller.error(state.error);
          else {
            await holdCloseUntil?.then(
              () => {},
              () => {},
            );
            if (!cancelled && !signal?.aborted) controller.close();
          }
        },
        cancel() {
          cancelled = true;
          stop?.();
        },
      });
    },
  };
}
