import { resolve } from 'node:path';
import { createIdem, memoryStore } from 'idem';
const other = process.argv[2]!;
const { createIdem: createOther } = (await import(resolve(other, 'core/engine.ts'))) as { createIdem: typeof createIdem };
const send = async (n: number) => ({ receipt: `r_${n}`, amount: 1240.55 });
const N = 50_000;
const engines = { new: createIdem, old: createOther };
const best: Record<string, number> = {};
const made = Object.fromEntries(Object.entries(engines).map(([n, c]) => [n, c({ store: memoryStore(), ttl: 600_000, lease: 30_000 })]));
for (const [, idem] of Object.entries(made)) for (let i = 0; i < 1000; i++) await idem.run(`replay:${i}`, () => send(i));
let k = 0;
for (let round = 0; round < 12; round++) {
  for (const [name, idem] of Object.entries(made)) {
    for (const w of ['fresh', 'replay']) {
      const c = process.cpuUsage();
      for (let i = 0; i < N; i++, k++) {
        if (w === 'fresh') await idem.run(`fresh:${k}`, () => send(i));
        else await idem.run(`replay:${i % 1000}`, () => send(i));
      }
      const u = process.cpuUsage(c);
      const us = (u.user + u.system) / N;
      const id = `${name} ${w}`;
      best[id] = Math.min(best[id] ?? Infinity, us);
    }
  }
}
for (const [id, us] of Object.entries(best)) console.log(`${id.padEnd(14)} min CPU/op ${us.toFixed(2)} µs`);
