/**
 * Deadlines for many short operations that all get the same time limit, on one timer.
 *
 * A store starts a deadline per call and ends it when the answer comes. Every deadline is
 * `ms` long, so they expire in the order they started: a queue suffices, and one timer armed
 * for the oldest pending deadline serves them all. Under steady traffic that timer fires about
 * once per `ms` instead of being set and cleared on every call (Node's timer list is rebuilt each
 * time its last timer is cleared, which is what a call-at-a-time store does). The timer keeps the
 * process alive only while a call is pending, like a per-call timer would.
 *
 * @module
 */

/** One started deadline; hand it back to `end` when the operation settles. */
export interface Deadline {
  readonly at: number;
  /** Runs once when the deadline passes first; cleared by `end`. */
  onExpire: (() => void) | undefined;
}

/** A queue of equal-length deadlines. */
export interface Deadlines {
  /** Starts a deadline `ms` from now; `onExpire` runs if `end` is not called before. */
  start(onExpire: () => void): Deadline;
  /** Ends a deadline: true when it was still running (the caller won), false if it had expired. */
  end(d: Deadline): boolean;
}

/**
 * A deadline queue for operations of `ms` each.
 *
 * @example
 * const deadlines = createDeadlines(2000);
 * const d = deadlines.start(() => reject(new StoreUnavailableError('timed out')));
 * op().then((v) => deadlines.end(d) && resolve(v));
 */
export function createDeadlines(ms: number): Deadlines {
  let queue: Deadline[] = [];
  let head = 0;
  let pending = 0;
  let timer: NodeJS.Timeout | undefined;

  const arm = (delay: number) => {
    timer = setTimeout(tick, Math.max(0, delay));
    if (pending === 0) timer.unref();
  };

  const tick = () => {
    timer = undefined;
    const now = performance.now();
    while (head < queue.length) {
      const d = queue[head]!;
      if (d.onExpire && d.at > now) break;
      head++;
      const fire = d.onExpire;
      if (fire) {
        d.onExpire = undefined;
        pending--;
        fire();
      }
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else {
      if (head > 1024) {
        queue = queue.slice(head);
        head = 0;
      }
      arm(queue[head]!.at - now);
    }
  };

  return {
    start(onExpire) {
      const d: Deadline = { at: performance.now() + ms, onExpire };
      queue.push(d);
      if (pending++ === 0) {
        if (timer) timer.ref();
        else arm(ms);
      }
      return d;
    },
    end(d) {
      if (!d.onExpire) return false;
      d.onExpire = undefined;
      if (--pending === 0) timer?.unref();
      return true;
    },
  };
}
