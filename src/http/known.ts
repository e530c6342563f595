/**
 * Refusing unknown option names: `idempotency({ headerName: 'X-Request-Id' })` would otherwise
 * quietly protect nothing. Shared by the middleware options and the gateway's config and routes.
 *
 * @module
 */
import { InvalidOptionError } from '../core/errors.ts';

/**
 * Throws `InvalidOptionError` for the first own key of `options` that `known` does not list,
 * naming the nearest known one: `unknown option headerName — did you mean header?`. `where`
 * prefixes the name (`routes[0].`).
 *
 * @example
 * checkKnownOptions({ headerName: 'X' }, ['header', 'required']) // throws: unknown option headerName — did you mean header?
 */
export function checkKnownOptions(options: object, known: readonly string[], where = ''): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue;
    const near = nearestName(name, known);
    const hint = near === undefined ? ` (known: ${known.join(', ')})` : ` — did you mean ${where}${near}?`;
    throw new InvalidOptionError(`unknown option ${where}${name}${hint}`);
  }
}

/**
 * The candidate closest to `name` (case-insensitive edit distance, or one name containing the
 * other), or undefined when none is close enough to be a plausible typo.
 *
 * @example
 * nearestName('replayHeader', ['replayHeaders', 'header']) // 'replayHeaders'
 */
export function nearestName(name: string, candidates: readonly string[]): string | undefined {
  const n = name.toLowerCase();
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    let score = editDistance(n, c);
    if (c.length >= 3 && (n.includes(c) || c.includes(n)))
      score = Math.min(score, Math.abs(n.length - c.length) / 2);
    if (score < bestScore) {
      best = candidate;
      bestScore = score;
    }
  }
  return bestScore <= Math.max(2, Math.ceil(name.length / 3)) ? best : undefined;
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(
        (rows[i - 1]?.[j] ?? 0) + 1,
        (row[j - 1] ?? 0) + 1,
        (rows[i - 1]?.[j - 1] ?? 0) + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, (rows[i - 2]?.[j - 2] ?? 0) + 1);
      row.push(d);
    }
    rows.push(row);
  }
  return rows[a.length]?.[b.length] ?? 0;
}
