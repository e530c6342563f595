/**
 * How `idem check` judges each row of the IETF behaviour table
 * (/work/shared/reference/http-semantics.md §1.4, docs/cli.md): from the answers it collected,
 * what the endpoint did, whether the operation executed again, and a verdict.
 *
 * @module
 */
import type { ProbeAnswer } from './check-probe.ts';

/** `pass`, `fail` (not what the table says), `warn` (allowed, or cannot tell), `not-applicable`. */
export type Verdict = 'pass' | 'fail' | 'warn' | 'not-applicable';

/** One row of the report. */
export interface CheckRow {
  /** Stable: `first`, `replay`, `concurrent`, `after-concurrent`, `changed-body`, `no-key`, `malformed-<kind>`. */
  id: string;
  /** What was sent. */
  name: string;
  /** What the behaviour table says the endpoint should do. */
  expected: string;
  /** What it did: statuses, `replayed`, `problem+json` (e.g. `201 ×1, 201 replayed ×9`). */
  got: string;
  statuses: number[];
  /**
   * How often this row's requests executed the operation: a number when the response ids (or
   * the replay marker) tell, null when nothing tells ("cannot tell").
   */
  executions: number | null;
  /** True when the row shows one key executing more than once; null: cannot tell. */
  duplicate: boolean | null;
  verdict: Verdict;
  /** Why, in a sentence (empty for a plain pass). */
  note: string;
}

/** Whether answers carry the evidence of an execution: the endpoint marks replays, ids to compare. */
export interface Evidence {
  /** The endpoint sent `Idempotent-Replayed: true` at least once: an unmarked answer is an execution. */
  marksReplays: boolean;
}

/** An answer that can be an execution (not a 409, not an idem-style problem). */
const mayHaveExecuted = (a: ProbeAnswer) => a.status !== 409 && !a.problem;

/**
 * How many times a group of answers to one key executed: distinct ids when every candidate has
 * one; else, when the endpoint marks replays, the unmarked ones; else null (cannot tell).
 *
 * @example
 * countExecutions([first, replay], { marksReplays: true }) // 1
 */
export function countExecutions(answers: ProbeAnswer[], evidence: Evidence): number | null {
  const candidates = answers.filter(mayHaveExecuted);
  if (candidates.length === 0) return 0;
  if (candidates.every((a) => a.executionId !== undefined)) {
    return new Set(candidates.map((a) => a.executionId)).size;
  }
  if (evidence.marksReplays) return candidates.filter((a) => !a.replayed).length;
  return null;
}

const ids = (answers: ProbeAnswer[]) =>
  [...new Set(answers.map((a) => a.executionId).filter((id) => id !== undefined))].join(', ');

/**
 * `201`, `201 replayed`, `422 problem+json`; several answers grouped: `201 ×1, 409 ×9`.
 *
 * @example
 * describeAnswers(burst) // '201 ×1, 201 replayed ×9'
 */
export function describeAnswers(answers: ProbeAnswer[]): string {
  const one = (a: ProbeAnswer) =>
    `${a.status}${a.replayed ? ' replayed' : ''}${a.problem ? ' problem+json' : ''}`;
  if (answers.length === 1) return one(answers[0]!);
  const counts = new Map<string, number>();
  for (const a of answers) counts.set(one(a), (counts.get(one(a)) ?? 0) + 1);
  return [...counts].map(([text, n]) => `${text} ×${n}`).join(', ');
}

const CANNOT_TELL =
  'cannot tell whether it executed again: no response id to compare and no Idempotent-Replayed (give --id-field or --id-header)';

/**
 * Does a refusal say what went wrong the way the draft asks (problem+json, or a describedby Link)?
 *
 * @example
 * describedRefusal(answer) // true for a 422 application/problem+json
 */
export const describedRefusal = (a: ProbeAnswer) => a.problem || a.describedBy;

/**
 * The row for the same key sent again after `original` completed: the stored answer
 * (same status and body), `Idempotent-Replayed: true`, and no second execution.
 *
 * @example
 * replayRow('replay', 'same key again, after completion', first, [first], second, evidence)
 */
export function replayRow(
  id: string,
  name: string,
  original: ProbeAnswer,
  before: ProbeAnswer[],
  again: ProbeAnswer,
  evidence: Evidence,
  conflicts: ProbeAnswer[] = [],
): CheckRow {
  const total = countExecutions([...before, again], evidence);
  const earlier = countExecutions(before, evidence);
  const executions = total === null || earlier === null ? null : total - earlier;
  const duplicate = executions === null ? null : executions > 0;
  const same =
    again.status === original.status && Buffer.from(again.bytes).equals(Buffer.from(original.bytes));
  const row = (verdict: Verdict, note: string): CheckRow => ({
    id,
    name,
    expected: 'the stored answer, replayed',
    got: describeAnswers([...conflicts, again]),
    statuses: [...conflicts, again].map((a) => a.status),
    executions,
    duplicate,
    verdict,
    note,
  });
  if (duplicate) return row('fail', `DUPLICATE EXECUTED: a second execution (${ids([original, again])})`);
  if (again.status === 409)
    return row(
      'fail',
      `answered 409 in progress although the first request had completed${conflicts.length ? `, ${conflicts.length + 1} times (honouring Retry-After)` : ''}`,
    );
  if (again.status >= 500) return row('fail', `answered ${again.status} instead of the stored answer`);
  if (!same) {
    const what =
      again.status === original.status ? 'the body differs' : `the status differs (${original.status} first)`;
    if (duplicate === false && again.status === original.status)
      return row(
        'warn',
        'the body differs from the first answer, but the same id: replayed, not executed again',
      );
    return row('fail', `not the stored answer: ${what}${duplicate === null ? `; ${CANNOT_TELL}` : ''}`);
  }
  if (duplicate === null) return row('warn', `identical status and body, but ${CANNOT_TELL}`);
  if (conflicts.length)
    return row(
      'warn',
      `answered 409 in progress right after the first response arrived; replayed after Retry-After: ${conflicts[0]!.retryAfter}`,
    );
  if (!again.replayed)
    return row(
      'warn',
      'identical status and body, no Idempotent-Replayed: true (the draft defines no marker; Stripe sends it)',
    );
  return row('pass', '');
}

/**
 * A refusal row: `want` is the status the table asks for (without problem+json or a describedby
 * Link it is a warn); 5xx is a fail; any other answer is judged by `otherwise`.
 *
 * @example
 * refusalRow('no-key', 'no key', '400 if required, else processed', answer, 400, () => ({
 *   verdict: 'warn',
 *   note: 'processed: the key is optional',
 * }))
 */
export function refusalRow(
  id: string,
  name: string,
  expected: string,
  answer: ProbeAnswer,
  want: number,
  otherwise: (a: ProbeAnswer) => { verdict: Verdict; note: string; executions?: number | null },
): CheckRow {
  const base = {
    id,
    name,
    expected,
    got: describeAnswers([answer]),
    statuses: [answer.status],
    executions: answer.status >= 400 || answer.replayed ? 0 : 1,
    duplicate: null,
  };
  if (answer.status === want) {
    return describedRefusal(answer)
      ? { ...base, verdict: 'pass', note: '' }
      : {
          ...base,
          verdict: 'warn',
          note: `${want} without application/problem+json or a Link rel="describedby"`,
        };
  }
  if (answer.status >= 500)
    return { ...base, verdict: 'fail', note: `answered ${answer.status}: a server error, not a refusal` };
  return { ...base, ...otherwise(answer) };
}
