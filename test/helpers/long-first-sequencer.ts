/**
 * Test files in vitest's order, except that the few that take a minute or more start first.
 * Without a cache (a fresh clone, CI) vitest orders files by size, so a short file that runs for
 * minutes (the chaos profile) started last and ran alone at the end: about 100 s of a 670 s run.
 */
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** The slowest files of a CI run, slowest first (test/ paths). */
const LONG = [
  'test/chaos/chaos.test.ts',
  'test/cli/inspect.test.ts',
  'test/package/consumer.test.ts',
  'test/stores/dynamodb.conformance.test.ts',
  'test/gateway/cluster-wake.test.ts',
  'test/gateway/workers.test.ts',
  'test/ai/processes.test.ts',
  'test/ai/gateway-preset.test.ts',
  'test/cli/cli.test.ts',
  'test/stores/redis.cluster.test.ts',
];

const rank = (s: TestSpecification) => {
  const i = LONG.findIndex((path) => s.moduleId.endsWith(path));
  return i === -1 ? LONG.length : i;
};

export default class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return (await super.sort(files))
      .map((s, i) => ({ s, i }))
      .sort((a, b) => rank(a.s) - rank(b.s) || a.i - b.i)
      .map(({ s }) => s);
  }
}
