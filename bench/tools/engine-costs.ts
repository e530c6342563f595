/**
 * The cost of each piece of work the engine does per call, next to a cheaper alternative, so
 * engine changes can be judged by numbers (CPU profile of the fresh-key path points at these).
 *
 * ```
 * npx node --conditions=idem-source bench/tools/engine-costs.ts
 * ```
 *
 * @module
 */
import { createHash, hash, randomBytes, randomUUID } from 'node:crypto';
import * as devalue from 'devalue';
import { downstreamKeyOf, recordIdOf } from '../../src/core/keys.ts';
import { startHeartbeat } from '../../src/core/lease.ts';
import { decodeOutcome, encodeOutcome } from '../../src/core/outcome.ts';
import type { Store } from '../../src/core/store.ts';

const N = 200_000;
const value = { receipt: 'r_123456', amount: 1240.55 };
const encoded = encodeOutcome({ kind: 'value', value });

function time(name: string, fn: (i: number) => unknown) {
  for (let i = 0; i < 20_000; i++) fn(i); // warm up
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fn(i);
  const ns = ((performance.now() - t0) * 1e6) / N;
  console.log(`${ns.toFixed(0).padStart(7)} ns  ${name}`);
}

const noopStore = { renew: async () => 0 } as unknown as Store;

console.log(`per call, mean of ${N}:`);
time('randomBytes(16).toString(base64url)   (engine token)', () => randomBytes(16).toString('base64url'));
time('randomUUID()                           (alternative)', () => randomUUID());
time('recordIdOf([], key)                    (createHash)', (i) => recordIdOf([], `fresh:${i}`));
time("hash('sha256', …, 'base64url')          (one-shot)", (i) =>
  hash('sha256', JSON.stringify([`fresh:${i}`]), 'base64url'),
);
time('downstreamKeyOf(id)                    (eager, every call)', (i) => downstreamKeyOf(`id${i}`));
time('createHash digest only                 (reference)', (i) =>
  createHash('sha256').update(`x${i}`).digest(),
);
time("encodeOutcome({ kind: 'value', … })     (devalue)", () => encodeOutcome({ kind: 'value', value }));
time('JSON.stringify(value)                  (plain JSON)', () => JSON.stringify(value));
time('decodeOutcome(encoded)                 (devalue)', () => decodeOutcome(encoded));
time('JSON.parse(json)                       (plain JSON)', () =>
  JSON.parse('{"receipt":"r_123456","amount":1240.55}'),
);
time('devalue.stringify(value)               (no envelope)', () => devalue.stringify(value));
time('new AbortController()', () => new AbortController());
time('startHeartbeat(…).stop()               (setTimeout + clearTimeout)', () =>
  startHeartbeat({
    store: noopStore,
    id: 'id',
    token: 't',
    leaseMs: 30_000,
    intervalMs: 10_000,
    leaseEnd: Date.now() + 30_000,
    controller: new AbortController(),
    onRenew: () => {},
    onError: () => {},
  }).stop(),
);
time('Buffer.byteLength(encoded)', () => Buffer.byteLength(encoded));
