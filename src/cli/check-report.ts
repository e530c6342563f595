/**
 * The table `idem check` prints: one line per row of the behaviour table (✓ pass, ✗ fail,
 * ! warn, - not applicable), aligned columns, the reason under a row that did not pass, and
 * the result with its exit code.
 *
 * @module
 */
import type { CheckReport, CheckResult } from './check.ts';

const MARK = { pass: '✓', fail: '✗', warn: '!', 'not-applicable': '-' } as const;

const RESULT: Record<CheckResult, string> = {
  idempotent: 'idempotent',
  'duplicate-executed': 'NOT idempotent: a duplicate executed',
  'not-conformant': 'no duplicate executed, but not conformant (see ✗ above)',
  'not-checked': 'not checked: the first request was refused (see ✗ above)',
};

/**
 * The readable report.
 *
 * @example
 * console.log(formatCheck(await checkEndpoint(url)));
 */
export function formatCheck(report: CheckReport): string {
  const header = ['', 'row', 'expected', 'got', 'executed'];
  const cells = report.rows.map((r, i) => [
    `${MARK[r.verdict]} ${r.verdict === 'not-applicable' ? 'n/a' : r.verdict}`,
    `${i + 1}. ${r.name}`,
    r.expected,
    r.got,
    r.verdict === 'not-applicable' ? '-' : executed(r.executions, r.duplicate, r.id),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: string[]) =>
    `  ${row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')}`.trimEnd();
  const lines = [
    `idem check ${report.method} ${report.url}  (${report.keyHeader}: ${report.key})`,
    line(header),
  ];
  report.rows.forEach((r, i) => {
    lines.push(line(cells[i]!));
    if (r.note && r.verdict !== 'pass') lines.push(`${' '.repeat(widths[0]! + 4)}└ ${r.note}`);
  });
  const facts = [
    `duplicate executed: ${report.duplicateExecuted === null ? 'cannot tell' : report.duplicateExecuted ? 'YES' : 'no'}`,
    `replays marked (Idempotent-Replayed): ${report.marksReplays ? 'yes' : 'no'}`,
    `refusals as problem+json: ${report.problemJson === null ? '-' : report.problemJson ? 'yes' : 'no'}`,
  ];
  lines.push(facts.join('; '));
  let result = `result: ${RESULT[report.result]}`;
  if (report.result === 'idempotent' && report.duplicateExecuted === null) {
    result =
      'result: no failure seen, but whether a duplicate executed cannot be told (give --id-field or --id-header)';
  }
  lines.push(`${result} (exit ${report.exitCode})`);
  return lines.join('\n');
}

function executed(executions: number | null, duplicate: boolean | null, id: string): string {
  if (duplicate) return id === 'concurrent' ? `${executions}× DUPLICATE` : 'again: DUPLICATE';
  if (executions === null) return 'cannot tell';
  return executions === 0 ? 'no' : `${executions}×`;
}
