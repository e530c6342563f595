/**
 * A small instance of examples/claims-queue with chaos on: workers and relays SIGKILLed,
 * broker connections killed, forced redeliveries and duplicate submissions; every claim must
 * be paid exactly once, every stage's effects committed once, nothing stuck.
 */
import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';
import { serviceAvailable } from '../helpers/services.ts';

const up = (await serviceAvailable('postgres')) && (await serviceAvailable('amqp'));

it.skipIf(!up)(
  'claims-queue under chaos: claims in = payments out, no payment twice, no claim stuck',
  async () => {
    const main = new URL('../../examples/claims-queue/main.ts', import.meta.url).pathname;
    const child = spawn(
      process.execPath,
      ['--conditions=idem-source', main, '--claims', '12', '--chaos', '--seed', '5', '--timeout', '60'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(err, out).toBe('');
    expect(out).toContain('payments out:         12 ');
    expect(out).toContain('paid twice:           0');
    expect(out).toMatch(/stuck claims:\s+0 \(audited 12; outbox pending 0, parked 0\)/);
    expect(out).toMatch(/stage runs:\s+60 /);
    const chaos = out.match(/chaos:\s+(\d+) processes SIGKILLed by the supervisor, (\d+) deaths in all/);
    expect(Number(chaos?.[1])).toBeGreaterThan(0);
    expect(Number(out.match(/duplicates dropped:\s+(\d+)/)?.[1])).toBeGreaterThan(0);
    expect(out).toContain('✓ claims in = payments out, no payment twice, no claim stuck');
    expect(code, out + err).toBe(0);
  },
  90_000,
);
