/**
 * The rows of `idem check` that need more than {@link replayRow} and {@link refusalRow}: the
 * first request, the concurrent burst, the changed body, and the malformed keys sent.
 *
 * @module
 */
import type { ProbeAnswer } from './check-probe.ts';
import {
  type CheckRow,
  countExecutions,
  describeAnswers,
  describedRefusal,
  type Evidence,
  refusalRow,
} from './check-rows.ts';

/**
 * Row 1, a fresh key: passes on 2xx/3xx; a 4xx or 5xx is a warn (the rows after it check that answer).
 *
 * @example
 * firstRow(await send(key)).verdict // 'pass'
 */
export function firstRow(first: ProbeAnswer): CheckRow {
  const verdict = first.status < 400 ? 'pass' : 'warn';
  return {
    id: 'first',
    name: 'new key',
    expected: "the resource's answer",
    got: describeAnswers([first]),
    statuses: [first.status],
    executions: first.status < 400 ? 1 : null,
    duplicate: false,
    verdict,
    note:
      verdict === 'pass'
        ? `${first.bytes.byteLength} bytes in ${first.ms} ms${first.executionId ? `, ${first.executionId}` : ''}`
        : `the endpoint answered ${first.status}: the rows below check that answer, not an execution (send a valid body with -d)`,
  };
}

/**
 * The answer of the one execution in a burst (else its first answer that may have executed).
 *
 * @example
 * executedOf(burst).executionId // 'id=pay_7'
 */
export function executedOf(burst: ProbeAnswer[]): ProbeAnswer {
  return (
    burst.find((a) => a.status !== 409 && !a.replayed) ?? burst.find((a) => a.status !== 409) ?? burst[0]!
  );
}

/**
 * Row 3, N duplicates at once: one execution; the others its answer or 409 + Retry-After.
 *
 * @example
 * burstRow(burst, 10, { marksReplays: true }).executions // 1
 */
export function burstRow(burst: ProbeAnswer[], n: number, evidence: Evidence): CheckRow {
  const name = `${n} at once with one fresh key`;
  const expected = '1 execution; replays or 409 + Retry-After';
  if (burst.length === 0) return notApplicable('concurrent', name, expected);
  const executions = countExecutions(burst, evidence);
  const base = {
    id: 'concurrent',
    name,
    expected,
    got: describeAnswers(burst),
    statuses: burst.map((a) => a.status),
    executions,
    duplicate: executions === null ? null : executions > 1,
  };
  const ids = [...new Set(burst.map((a) => a.executionId).filter(Boolean))];
  if (executions !== null && executions > 1)
    return {
      ...base,
      verdict: 'fail',
      note: `DUPLICATE EXECUTED: ${executions} executions for one key${ids.length ? ` (${ids.slice(0, 4).join(', ')}${ids.length > 4 ? ', …' : ''})` : ''}`,
    };
  const errors = burst.filter((a) => a.status >= 500);
  if (errors.length)
    return { ...base, verdict: 'fail', note: `${errors.length} answered ${errors[0]!.status}` };
  const answered = burst.filter((a) => a.status !== 409);
  if (answered.length === 0)
    return { ...base, verdict: 'fail', note: 'every duplicate got 409: none executed' };
  const one = executedOf(burst);
  const differ = answered.filter(
    (a) => a.status !== one.status || !Buffer.from(a.bytes).equals(Buffer.from(one.bytes)),
  );
  if (differ.length)
    return {
      ...base,
      verdict: 'fail',
      note: `${differ.length} answered something else than the execution's answer`,
    };
  const conflicts = burst.filter((a) => a.status === 409);
  const notes: string[] = [];
  if (conflicts.some((a) => a.retryAfter === null)) notes.push('a 409 without Retry-After');
  if (conflicts.some((a) => !describedRefusal(a)))
    notes.push('a 409 without problem+json or Link rel="describedby"');
  if (executions === null)
    notes.push(
      'cannot tell how many executed: no response id and no Idempotent-Replayed (give --id-field or --id-header)',
    );
  return notes.length
    ? { ...base, verdict: 'warn', note: notes.join('; ') }
    : { ...base, verdict: 'pass', note: '' };
}

/**
 * Row 5, the first key with another body: 422; another refusal is a warn; a 2xx a fail.
 *
 * @example
 * changedRow(first, changed).verdict // 'pass' for a 422 problem
 */
export function changedRow(first: ProbeAnswer, changed: ProbeAnswer): CheckRow {
  return refusalRow('changed-body', 'same key, changed body', '422 problem+json', changed, 422, (a) => {
    if (a.status >= 400)
      return { verdict: 'warn', note: `refused with ${a.status} (the draft asks 422; Stripe answers 400)` };
    if (a.replayed || (a.executionId !== undefined && a.executionId === first.executionId))
      return {
        verdict: 'fail',
        executions: 0,
        note: "answered the first request's stored answer for another body (expected 422)",
      };
    if (a.executionId === undefined)
      return {
        verdict: 'fail',
        note: `answered ${a.status} instead of 422 (whether it executed cannot be told: no response id)`,
        executions: null,
      };
    return { verdict: 'fail', note: 'executed another body under a used key (expected 422)' };
  });
}

/**
 * A row that was not run (`--concurrency` under 2).
 *
 * @example
 * notApplicable('concurrent', '1 at once', '1 execution').verdict // 'not-applicable'
 */
export function notApplicable(id: string, name: string, expected: string): CheckRow {
  return {
    id,
    name,
    expected,
    got: '-',
    statuses: [],
    executions: null,
    duplicate: null,
    verdict: 'not-applicable',
    note: '--concurrency under 2',
  };
}

/** One malformed key probe: its row id suffix, label and the raw header value. */
export interface Malformed {
  kind: string;
  label: string;
  value: string;
}

/**
 * The malformed keys sent, each unique so that an endpoint that accepts one does not replay another.
 *
 * @example
 * malformedKeys('idem-check-1').map((m) => m.kind) // ['empty', 'list', 'control', 'syntax', 'too-long']
 */
export function malformedKeys(unique: string): Malformed[] {
  return [
    { kind: 'empty', label: 'empty value', value: '' },
    { kind: 'list', label: 'a list (a, b)', value: `${unique}-a, ${unique}-b` },
    { kind: 'control', label: 'a control character (tab)', value: `${unique}\tx` },
    { kind: 'syntax', label: 'not an sf-string ("unterminated)', value: `"${unique}` },
    { kind: 'too-long', label: '256 characters', value: `${unique}-${'x'.repeat(255 - unique.length)}` },
  ];
}
