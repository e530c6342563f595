import { InvalidOptionError } from './errors.ts';

/** A duration: milliseconds, or a string such as `'1500ms'`, `'30s'`, `'5m'`, `'24h'`, `'7d'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd'}`;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/**
 * Converts a {@link Duration} to whole milliseconds, or throws `InvalidOptionError` naming the
 * option. Accepts finite non-negative numbers and `<number><unit>` strings.
 *
 * @example
 * toMs('30s', 'lease') // 30000
 * toMs(1500, 'lease')  // 1500
 */
export function toMs(value: Duration | string, option: string): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value >= 0) return Math.round(value);
  } else if (typeof value === 'string') {
    const m = PATTERN.exec(value.trim());
    if (m) return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
  }
  throw new InvalidOptionError(
    `${option} must be milliseconds or a string like '1500ms', '30s', '5m', '24h', '7d'; got ${JSON.stringify(value)}`,
  );
}
