/**
 * The DynamoDB pages run as written: the quick start of docs/stores/dynamodb.md (its first ts
 * block, at most 10 lines) and the "after" half of the DynamoDB recipe in
 * docs/migrating/powertools.md, against dynalite through the SDK's endpoint variable.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';
import { createTestTable, startDynalite } from '../helpers/dynalite.ts';

const run = promisify(execFile);
const dynalite = await startDynalite();
afterAll(() => dynalite.stop());

/** Runs `code` as a module inside the package (so `idem/…` and the SDK resolve), from an empty cwd. */
async function runAsWritten(name: string, code: string): Promise<string> {
  const script = new URL(`./.docs-${name}-${process.pid}.ts`, import.meta.url).pathname;
  const cwd = mkdtempSync(join(tmpdir(), 'idem-ddb-docs-'));
  writeFileSync(script, code);
  try {
    const { stdout } = await run(process.execPath, ['--conditions=idem-source', script], {
      cwd,
      timeout: 30_000,
      env: {
        ...process.env,
        AWS_ENDPOINT_URL_DYNAMODB: dynalite.endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'docs',
        AWS_SECRET_ACCESS_KEY: 'docs',
      },
    });
    return stdout;
  } finally {
    rmSync(script, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
}

it('docs/stores/dynamodb.md: the quick start runs as written and replays', async () => {
  await createTestTable(dynalite.endpoint, 'idem');
  const page = readFileSync(new URL('../../docs/stores/dynamodb.md', import.meta.url), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(page)?.[1] ?? '';
  expect(code.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(10);
  expect((await runAsWritten('quickstart', code)).trim()).toBe('true 4200');
});

it('docs/migrating/powertools.md: the DynamoDB recipe runs on the Powertools table shape', async () => {
  await createTestTable(dynalite.endpoint, 'IdempotencyTable');
  const page = readFileSync(new URL('../../docs/migrating/powertools.md', import.meta.url), 'utf8');
  const section = page.slice(page.indexOf('## On the same DynamoDB table'));
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const after = block.slice(block.indexOf('// after'));
  expect(after).toContain('dynamodbStore(');
  const code = `
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createIdem, FingerprintMismatchError, InvalidKeyError } from 'idem';
import { dynamodbStore } from 'idem/dynamodb';
interface OrderEvent { orderId: string; amount: number }
let runs = 0;
const processOrder = async (event: OrderEvent) => ({ orderId: event.orderId, charged: event.amount, run: ++runs });
${after}
const first = await handler({ orderId: 'o-1', amount: 10 });
const again = await handler({ orderId: 'o-1', amount: 10 });
const changed = await handler({ orderId: 'o-1', amount: 99 }).catch((e) => e);
const missing = await Promise.resolve().then(() => handler({ orderId: '', amount: 1 })).catch((e) => e);
console.log(JSON.stringify({ first, again, runs, changed: changed instanceof FingerprintMismatchError, missing: missing instanceof InvalidKeyError }));
`;
  const out = JSON.parse(await runAsWritten('powertools', code));
  expect(out).toEqual({
    first: { orderId: 'o-1', charged: 10, run: 1 },
    again: { orderId: 'o-1', charged: 10, run: 1 },
    runs: 1,
    changed: true,
    missing: true,
  });
});
