/**
 * The one timer every heartbeat of an idem instance shares (see lease.ts for what a beat does).
 *
 * ```
 * holders waiting:  A(due 10 s) ─ B(due 10.1 s) ─ C(due 25 s)      one unref'd timer, armed for A
 * fires at 10 s ─▶ beats A and B (B is within a quarter of its interval) ─▶ re-armed for C
 * a holder that ends before its first beat unlinks itself: it never had a timer of its own
 * ```
 *
 * @module
 */

/** A heartbeat waiting for its next beat in a {@link HeartbeatTimer}. */
export interface Pulse {
  /** `performance.now()` time of the next beat. */
  dueAt: number;
  /** How much earlier than `dueAt` the beat may run when the timer fires for another one. */
  slackMs: number;
  beat(): void;
  /** Its neighbours in the timer's list while it waits (the timer sets them). */
  prev: Pulse | undefined;
  next: Pulse | undefined;
}

/**
 * One timer for many heartbeats: the holders that wait for a beat sit in a list, and a single
 * unref'd timer is armed for the earliest one. When it fires it beats every holder due within
 * its slack (a quarter of its interval: renewing a little early is harmless) and re-arms for
 * the next. A holder that finishes before its first beat (the common case) costs linking and
 * unlinking itself (no timer of its own, no hash table).
 */
export interface HeartbeatTimer {
  add(pulse: Pulse): void;
  /** Takes a waiting pulse out; a pulse not waiting is left alone. */
  delete(pulse: Pulse): void;
}

/**
 * Creates the shared heartbeat timer of one idem instance.
 *
 * @example
 * const beats = createHeartbeatTimer();
 * startHeartbeat({ ...args, beats }); // every holder of the instance shares one timer
 */
export function createHeartbeatTimer(): HeartbeatTimer {
  let first: Pulse | undefined;
  let timer: NodeJS.Timeout | undefined;
  let armedFor = Number.POSITIVE_INFINITY;
  const arm = (at: number) => {
    if (at >= armedFor) return;
    if (timer) clearTimeout(timer);
    armedFor = at;
    timer = setTimeout(fire, Math.max(0, at - performance.now()));
    timer.unref();
  };
  const unlink = (p: Pulse) => {
    if (p.prev) p.prev.next = p.next;
    else first = p.next;
    if (p.next) p.next.prev = p.prev;
    p.prev = p.next = undefined;
  };
  const fire = () => {
    timer = undefined;
    armedFor = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    const due: Pulse[] = [];
    for (let p = first; p; p = p.next) {
      if (p.dueAt - p.slackMs <= now) due.push(p);
      else if (p.dueAt < next) next = p.dueAt;
    }
    for (const p of due) unlink(p);
    if (next !== Number.POSITIVE_INFINITY) arm(next);
    for (const p of due) p.beat();
  };
  return {
    add(pulse) {
      if (pulse.prev || first === pulse) return; // already waiting
      pulse.next = first;
      if (first) first.prev = pulse;
      first = pulse;
      arm(pulse.dueAt);
    },
    // the timer stays armed (unref'd) when the list empties: re-arming per holder is what it saves
    delete(pulse) {
      if (pulse.prev || first === pulse) unlink(pulse);
    },
  };
}
