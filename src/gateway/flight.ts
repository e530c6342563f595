/**
 * Live flights, for `concurrency: 'attach'`: while one request of a key streams from the
 * upstream, duplicates on the same gateway instance join it. A joiner gets the head and every
 * chunk from offset 0, then each new chunk as it arrives, and ends when the holder's outcome
 * is stored.
 *
 * ```
 * holder:  create ── start(head) ── push ── push ── … ── settle(ok)
 * joiner:              join ─▶ head + chunks so far ─▶ live chunks ─▶ end
 * ```
 *
 * The buffer is the recording itself (the same Buffer objects), so joiners cost no copies.
 * Once the response outgrows the stored-body limit the buffer is dropped; later duplicates
 * then wait for the stored (body-omitted) outcome instead.
 *
 * @module
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { ForwardResult } from './respond.ts';

/** The head a joiner receives. */
export interface FlightHead {
  status: number;
  headers: OutgoingHttpHeaders;
  /** The outcome policy releases this response: joiners get it unmarked (not a replay). */
  release: boolean;
}

/** One live flight. */
export interface Flight {
  readonly fingerprint: string;
  /** Resolves with the head once the holder has one, or undefined when this flight forwards nothing. */
  readonly head: Promise<FlightHead | undefined>;
  /** The holder got the upstream's head. */
  start(head: FlightHead): void;
  /** The holder recorded a chunk (the flight keeps a reference while joinable). */
  push(chunk: Buffer): void;
  /** The response outgrew the stored-body limit: stop keeping chunks; existing joiners still follow. */
  drop(): void;
  /** Joins `res` from offset 0. False when the flight cannot be joined (no head, or chunks dropped). */
  join(res: ServerResponse): boolean;
  /** The holder is done: `true` ends joiners; `false` (the upstream broke off) destroys them. */
  settle(ok: boolean, outcome?: ForwardResult): void;
  /** The holder's stored outcome once settled (undefined when none was stored). */
  readonly outcome: Promise<ForwardResult | undefined>;
}

/**
 * Creates a flight for a request with this fingerprint.
 *
 * @example
 * const flight = createFlight(fp);
 * flights.set(recordId, flight);
 * // holder: flight.start(head); flight.push(chunk); … flight.settle(true)
 * // duplicate: if ((await flight.head) && flight.join(res)) return;
 */
export function createFlight(fingerprint: string): Flight {
  let resolveHead!: (head: FlightHead | undefined) => void;
  const head = new Promise<FlightHead | undefined>((r) => (resolveHead = r));
  let current: FlightHead | undefined;
  let chunks: Buffer[] | undefined = [];
  let settled: boolean | undefined;
  const joiners = new Set<ServerResponse>();
  let resolveOutcome!: (outcome: ForwardResult | undefined) => void;
  const outcome = new Promise<ForwardResult | undefined>((r) => (resolveOutcome = r));

  return {
    fingerprint,
    head,
    outcome,
    start(h) {
      current = h; // the holder builds the joiners' head (allow-listed headers and replay markers)
      resolveHead(h);
    },
    push(chunk) {
      chunks?.push(chunk);
      for (const res of joiners) if (!res.destroyed) res.write(chunk);
    },
    drop() {
      chunks = undefined;
    },
    join(res) {
      if (!current || !chunks || settled === false) return false;
      res.writeHead(current.status, current.headers);
      for (const c of chunks) res.write(c);
      if (settled) res.end();
      else {
        joiners.add(res);
        res.once('close', () => joiners.delete(res));
      }
      return true;
    },
    settle(ok, stored) {
      settled = ok;
      resolveHead(undefined);
      resolveOutcome(ok ? stored : undefined);
      for (const res of joiners) {
        if (ok) res.end();
        else res.destroy();
      }
      joiners.clear();
    },
  };
}
