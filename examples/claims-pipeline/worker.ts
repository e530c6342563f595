/**
 * One pipeline worker process. Reads claims (one JSON per line) on stdin, answers one result
 * line per claim on stdout. With chaos on, it SIGKILLs itself right after a payment, once per
 * claim, the worst moment: the money moved and nobody recorded it.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createIdem } from 'idem';
import { sqliteStore } from 'idem/sqlite';
import { processClaim } from './pipeline.ts';
import { type Claim, openWorld } from './services.ts';

const dir = process.argv[2]!;
const chaos = process.argv[3] === 'chaos';
const idem = createIdem({
  store: sqliteStore({ path: join(dir, 'idem.db') }),
  lease: '1s',
  onInProgress: 'wait',
});
const world = openWorld(join(dir, 'world.db'));

for await (const line of createInterface({ input: process.stdin })) {
  const claim = JSON.parse(line) as Claim;
  const crashAfterPayment = () => {
    const marker = join(dir, `crashed-${claim.claimNumber}`);
    if (chaos && Number(claim.claimNumber.slice(-2)) % 4 === 0 && !existsSync(marker)) {
      writeFileSync(marker, '');
      process.kill(process.pid, 'SIGKILL');
    }
  };
  try {
    const payment = await processClaim(idem, world, claim, crashAfterPayment);
    process.stdout.write(`${JSON.stringify({ claim: claim.claimNumber, payment })}\n`);
  } catch (error) {
    process.stdout.write(`${JSON.stringify({ claim: claim.claimNumber, error: String(error) })}\n`);
  }
}
