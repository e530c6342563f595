/**
 * "Did you mean": the known name closest to a mistyped one, for the hints every option check
 * gives (`unknown option keyHeadr — did you mean keyHeader?`).
 *
 * @module
 */

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
