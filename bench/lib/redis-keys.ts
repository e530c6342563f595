/**
 * Removing what a benchmark wrote to the shared Redis.
 *
 * @module
 */

/** The two commands {@link unlinkMatching} sends (ioredis' `Redis` has them). */
export interface ScanUnlink {
  scan(
    cursor: string,
    match: 'MATCH',
    pattern: string,
    count: 'COUNT',
    n: number,
  ): Promise<[string, string[]]>;
  unlink(...keys: string[]): Promise<number>;
}

/**
 * Unlinks every key matching `pattern` (SCAN pages of 1,000), and answers how many went.
 *
 * @example
 * await unlinkMatching(client, `${prefix}:*`);
 */
export async function unlinkMatching(client: ScanUnlink, pattern: string): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length) n += await client.unlink(...keys);
  } while (cursor !== '0');
  return n;
}
