import { createIdem, memoryStore } from 'idem';
import { recordIdFrom, validateKey } from '../../src/core/keys.ts';
import { plainValueOf } from '../../src/core/outcome.ts';
import { createTokens } from '../../src/core/turn.ts';
const N = 300_000;
function time(name: string, fn: (i: number) => unknown) {
  for (let i = 0; i < 20_000; i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < N; i++) fn(i);
  console.log(`${(((performance.now() - t0) * 1e6) / N).toFixed(0).padStart(6)} ns  ${name}`);
}
async function timeAsync(name: string, fn: (i: number) => Promise<unknown>) {
  for (let i = 0; i < 20_000; i++) await fn(i);
  const c = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await fn(i);
  const u = process.cpuUsage(c);
  console.log(`${(((performance.now() - t0) * 1e6) / N).toFixed(0).padStart(6)} ns wall ${(((u.user + u.system) * 1e3) / N).toFixed(0).padStart(6)} ns cpu  ${name}`);
}
const keys = Array.from({ length: 1000 }, (_, i) => `replay:${i}`);
time('validateKey', (i) => validateKey(keys[i % 1000]));
time('recordIdFrom', (i) => recordIdFrom('[', keys[i % 1000]!));
time('plainValueOf', () => plainValueOf('j1:{"receipt":"r_1","amount":1240.55}'));
const tok = createTokens();
time('token', () => tok());
const m = new Map<string, object>();
time('map set+delete', (i) => { m.set(keys[i % 1000]!, {}); m.delete(keys[i % 1000]!); });
const store = memoryStore();
const idem = createIdem({ store, ttl: 600_000, lease: 30_000 });
const send = async (n: number) => ({ receipt: `r_${n}`, amount: 1240.55 });
for (let i = 0; i < 1000; i++) await idem.run(keys[i]!, () => send(i));
await timeAsync('store.claim existing', (i) => store.claim({ id: 'x'.repeat(43), fingerprint: '', leaseMs: 1, ttlMs: 1, token: 't' }));
await timeAsync('idem.run replay', (i) => idem.run(keys[i % 1000]!, () => send(i)));
await timeAsync('idem.execute replay', (i) => idem.execute(keys[i % 1000]!, () => send(i)));
await timeAsync('async noop x3', async () => { await (async () => { await (async () => 1)(); })(); });
