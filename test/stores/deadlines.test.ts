import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createDeadlines } from '../../src/stores/deadlines.ts';

describe('createDeadlines', () => {
  it('expires the deadlines nobody ended, in order, about ms after each started', async () => {
    const deadlines = createDeadlines(60);
    const fired: [string, number][] = [];
    const t0 = performance.now();
    const a = deadlines.start(() => fired.push(['a', performance.now() - t0]));
    const b = deadlines.start(() => fired.push(['b', performance.now() - t0]));
    await sleep(30);
    const c = deadlines.start(() => fired.push(['c', performance.now() - t0]));
    expect(deadlines.end(b)).toBe(true);
    await sleep(150);
    expect(fired.map(([n]) => n)).toEqual(['a', 'c']);
    expect(fired[0]![1]).toBeGreaterThanOrEqual(59);
    expect(fired[1]![1]).toBeGreaterThanOrEqual(89);
    expect(fired[1]![1]).toBeLessThan(150);
    // ending an expired deadline says so, and ending twice is harmless
    expect(deadlines.end(a)).toBe(false);
    expect(deadlines.end(c)).toBe(false);
    expect(deadlines.end(b)).toBe(false);
  });

  it('keeps working across many cycles with thousands of deadlines in flight', async () => {
    const deadlines = createDeadlines(20);
    let expired = 0;
    for (let round = 0; round < 3; round++) {
      const started = Array.from({ length: 5000 }, () => deadlines.start(() => expired++));
      // every other one answers in time
      for (let i = 0; i < started.length; i += 2) expect(deadlines.end(started[i]!)).toBe(true);
      await sleep(60);
    }
    expect(expired).toBe(7500);
  });

  it('holds the process open while a deadline is pending, and not once every one has ended', () => {
    const module = fileURLToPath(new URL('../../src/stores/deadlines.ts', import.meta.url));
    const exitAfter = (script: string) => {
      const t0 = performance.now();
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
      return performance.now() - t0;
    };
    const head = `import { createDeadlines } from ${JSON.stringify(module)}; const d = createDeadlines(1500);`;
    expect(exitAfter(`${head} d.end(d.start(() => {}));`)).toBeLessThan(1200);
    expect(exitAfter(`${head} d.start(() => {});`)).toBeGreaterThanOrEqual(1500);
  });

  it('runs a deadline started after an idle spell', async () => {
    const deadlines = createDeadlines(10);
    deadlines.end(deadlines.start(() => {}));
    await sleep(50);
    let fired = false;
    deadlines.start(() => {
      fired = true;
    });
    await sleep(60);
    expect(fired).toBe(true);
  });
});
