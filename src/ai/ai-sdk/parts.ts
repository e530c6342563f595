/**
 * A model stream recorded part by part as it arrives, readable from its first part by any
 * number of followers: the caller that started the call and every duplicate that joins it in
 * this process. The upstream is read at its own pace: a follower that stops reading or goes
 * away never slows or stops the recording.
 *
 * @module
 */

/** The recording of one model stream. */
export interface PartsRecording<P> {
  /** Appends a part and wakes the followers. */
  push(part: P): void;
  /** The stream ended normally. */
  end(): void;
  /** The stream was cut: followers get `error` after the parts recorded so far. */
  fail(error: unknown): void;
  /** Every part recorded so far. */
  parts(): readonly P[];
  /**
   * A stream of every part from the first; `signal` ends it with the signal's reason. After the
   * last part it stays open until `holdCloseUntil` settles (the outcome is stored), so a caller
   * that has read everything and exits cannot leave the key unrecorded.
   */
  follow(signal?: AbortSignal | null, holdCloseUntil?: Promise<unknown>): ReadableStream<P>;
}

/**
 * A new, empty recording.
 *
 * @example
 * const rec = createPartsRecording<{ type: string }>();
 * const a = rec.follow(); rec.push({ type: 'text-delta' }); rec.end(); // a yields the part, then closes
 */
export function createPartsRecording<P>(): PartsRecording<P> {
  const parts: P[] = [];
  let state: { done: boolean; error?: { reason: unknown } } = { done: false };
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
    waiters.clear();
  };
  const settle = (next: typeof state) => {
    if (state.done) return;
    state = next;
    wake();
  };
  return {
    push(part) {
      if (state.done) return;
      parts.push(part);
      wake();
    },
    end: () => settle({ done: true }),
    fail: (reason) => settle({ done: true, error: { reason } }),
    parts: () => parts,
    follow(signal, holdCloseUntil) {
      let next = 0;
      let stopped = false;
      let stop: (() => void) | undefined;
      return new ReadableStream<P>({
        start(controller) {
          const onAbort = () => {
            stopped = true;
            try {
              controller.error(signal?.reason);
            } catch {
              // already closed
            }
            stop?.();
          };
          if (signal?.aborted) onAbort();
          else signal?.addEventListener('abort', onAbort, { once: true });
        },
        async pull(controller) {
          while (next >= parts.length && !state.done) {
            await new Promise<void>((resolve) => {
              stop = resolve;
              waiters.add(resolve);
            });
            if (stopped) return;
          }
          if (next < parts.length) return controller.enqueue(parts[next++]!);
          if (state.error) return controller.error(state.error.reason);
          await holdCloseUntil?.then(
            () => {},
            () => {},
          );
          if (!stopped) controller.close();
        },
        cancel() {
          stopped = true;
          stop?.();
        },
      });
    },
  };
}
