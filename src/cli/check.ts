/**
 * `idem check URL`: does this endpoint honour `Idempotency-Key`? Probes every row of the IETF
 * behaviour table (docs/cli.md): a fresh key; the same key again after completion; N
 * concurrent duplicates of another fresh key, then that key once more; the first key with a
 * changed body; no key; malformed keys. Whether a duplicate executed is told by the response
 * ids (`id` / `*_id` body fields, `--id-field`, `--id-header`) or, failing those, by the
 * endpoint's `Idempotent-Replayed` marker; otherwise the report says it cannot tell.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createProbe, type IdSource, type ProbeAnswer, parseTarget } from './check-probe.ts';
import { type CheckRow, describeAnswers, type Evidence, refusalRow, replayRow } from './check-rows.ts';
import {
  burstRow,
  changedRow,
  executedOf,
  firstRow,
  type Malformed,
  malformedKeys,
  notApplicable,
} from './check-table.ts';
import { cliFailure, EXIT_USAGE } from './failure.ts';

export type { CheckRow, Verdict } from './check-rows.ts';

/** Options of {@link checkEndpoint}. */
export interface CheckOptions {
  /** `POST` (default), `PUT`, `PATCH` or `DELETE`. */
  method?: string;
  /** The JSON body (a string) of the requests. Default: a small object with a random nonce. */
  data?: string;
  /** Extra request headers (`Authorization`…). */
  headers?: Record<string, string>;
  /** Default `'idempotency-key'`. */
  keyHeader?: string;
  /** How many duplicates are sent at once with one fresh key. Default 10; 0 or 1 skips the row. */
  concurrency?: number;
  /** Per request. Default 30 s. */
  timeoutMs?: number;
  /** What identifies an execution. Default: the body's top-level `id` / `*_id` / `*Id` fields. */
  ids?: IdSource;
}

/** `idempotent`: no fail, no duplicate; the other three exit non-zero (see {@link CHECK_EXIT}). */
export type CheckResult = 'idempotent' | 'duplicate-executed' | 'not-conformant' | 'not-checked';

/**
 * Exit codes of `idem check` by result (2 is a usage error).
 *
 * @example
 * CHECK_EXIT['duplicate-executed'] // 1
 */
export const CHECK_EXIT: Record<CheckResult, number> = {
  idempotent: 0,
  'duplicate-executed': 1,
  'not-checked': 1,
  'not-conformant': 3,
};

/** What {@link checkEndpoint} answers; `--json` prints it as is. */
export interface CheckReport {
  /** `idem-check/1`. */
  schema: 'idem-check/1';
  url: string;
  method: string;
  keyHeader: string;
  /** The key of rows 1, 2 and 5. */
  key: string;
  concurrency: number;
  result: CheckResult;
  exitCode: number;
  /** true: one key executed more than once; false: never; null: nothing tells. */
  duplicateExecuted: boolean | null;
  /** Whether the refusals (400/409/422) used `application/problem+json`; null: no refusal seen. */
  problemJson: boolean | null;
  /** Whether the endpoint marked replays with `Idempotent-Replayed: true`. */
  marksReplays: boolean;
  rows: CheckRow[];
}

const METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];

/**
 * Runs the check; never throws for an HTTP answer, only for a URL it cannot reach (an Error whose
 * message names the address and the cause, e.g. `ECONNREFUSED 127.0.0.1:8080`) or bad input.
 *
 * @example
 * const report = await checkEndpoint('http://127.0.0.1:8080/payments', { concurrency: 10 });
 * process.exitCode = report.exitCode;
 */
export async function checkEndpoint(url: string, options: CheckOptions = {}): Promise<CheckReport> {
  const keyHeader = (options.keyHeader ?? 'idempotency-key').toLowerCase();
  const method = (options.method ?? 'POST').toUpperCase();
  if (!METHODS.includes(method)) {
    throw cliFailure(
      `--method must be one of ${METHODS.join(', ')} (a key on ${method} is ignored)`,
      EXIT_USAGE,
    );
  }
  const concurrency = options.concurrency ?? 10;
  if (!Number.isInteger(concurrency) || concurrency < 0 || concurrency > 1000) {
    throw cliFailure('--concurrency must be a whole number from 0 to 1000', EXIT_USAGE);
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw cliFailure('--timeout must be a whole number of milliseconds, at least 1', EXIT_USAGE);
  }
  const data = options.data ?? JSON.stringify({ idemCheck: randomBytes(6).toString('hex'), amount: 1 });
  let other: string;
  try {
    other = JSON.stringify({ idemCheckOther: true, original: JSON.parse(data) as unknown });
  } catch {
    throw cliFailure('--data must be JSON', EXIT_USAGE);
  }
  const target = parseTarget(url);
  const probe = createProbe({
    url: target,
    method,
    headers: options.headers ?? {},
    timeoutMs,
    ids: options.ids ?? {},
  });
  const send = (key: string | undefined, body = data) => probe(keyHeader, key, body);
  const fresh = () => `idem-check-${randomBytes(8).toString('hex')}`;
  const key = fresh();
  const report = (rows: CheckRow[], answers: ProbeAnswer[], marksReplays: boolean) =>
    summarize({ url, method, keyHeader, key, concurrency, rows, answers, marksReplays });

  const first = await send(key);
  const refusal = first.problem
    ? REFUSALS.find(([type]) => first.problemType.endsWith(`/${type}`))
    : undefined;
  if (refusal) {
    const row: CheckRow = {
      id: 'first',
      name: 'new key',
      expected: "the resource's answer",
      got: describeAnswers([first]),
      statuses: [first.status],
      executions: 0,
      duplicate: null,
      verdict: 'fail',
      note: `refused ${first.problemType}: the request never ran, nothing was checked; ${refusal[1]}`,
    };
    return { ...report([row], [first], false), result: 'not-checked', exitCode: CHECK_EXIT['not-checked'] };
  }
  /** A retry the way SDKs retry: a 409 with Retry-After (at most 5 s) is sent again, up to 3 times. */
  const settle = async (k: string) => {
    let answer = await send(k);
    const conflicts: ProbeAnswer[] = [];
    while (answer.status === 409 && conflicts.length < 3) {
      const seconds = Number(answer.retryAfter);
      if (answer.retryAfter === null || !Number.isFinite(seconds) || seconds < 0 || seconds > 5) break;
      conflicts.push(answer);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      answer = await send(k);
    }
    return { answer, conflicts };
  };
  const again = await settle(key);
  const burstKey = fresh();
  const burst =
    concurrency >= 2 ? await Promise.all(Array.from({ length: concurrency }, () => send(burstKey))) : [];
  const afterBurst = burst.length ? await settle(burstKey) : undefined;
  const changed = await send(key, other);
  const noKey = await send(undefined);
  const malformed = await malformedKeys(fresh()).reduce<Promise<[Malformed, ProbeAnswer][]>>(
    async (done, m) => [...(await done), [m, await send(m.value)]],
    Promise.resolve([]),
  );

  const all = [
    first,
    ...again.conflicts,
    again.answer,
    ...burst,
    ...(afterBurst ? [...afterBurst.conflicts, afterBurst.answer] : []),
    changed,
    noKey,
    ...malformed.map((m) => m[1]),
  ];
  const evidence: Evidence = { marksReplays: all.some((a) => a.replayed) };
  const rows: CheckRow[] = [
    firstRow(first),
    replayRow(
      'replay',
      'same key again, after completion',
      first,
      [first],
      again.answer,
      evidence,
      again.conflicts,
    ),
    burstRow(burst, concurrency, evidence),
    afterBurst
      ? replayRow(
          'after-concurrent',
          'that key again, after they completed',
          executedOf(burst),
          burst,
          afterBurst.answer,
          evidence,
          afterBurst.conflicts,
        )
      : notApplicable(
          'after-concurrent',
          'that key again, after they completed',
          'the stored answer of that execution',
        ),
    changedRow(first, changed),
    refusalRow('no-key', `no ${keyHeader}`, '400 if the key is required, else processed', noKey, 400, (a) =>
      a.status < 400
        ? {
            verdict: 'warn',
            note: 'processed without a key: fine when the key is optional, but such a request has no protection',
          }
        : { verdict: 'warn', note: `answered ${a.status}; the draft asks 400 where the key is required` },
    ),
    ...malformed.map(([m, a]) =>
      refusalRow(`malformed-${m.kind}`, `malformed key: ${m.label}`, '400 problem+json', a, 400, (x) => ({
        verdict: 'warn',
        note:
          x.status < 400
            ? 'accepted: the draft leaves malformed keys to your published policy (idem refuses them)'
            : `answered ${x.status} instead of 400`,
      })),
    ),
  ];
  return report(rows, all, evidence.marksReplays);
}

/** idem's refusals of the request itself: the endpoint was not exercised, so nothing was checked. */
const REFUSALS: readonly (readonly [string, string])[] = [
  ['missing-credentials', "pass the caller's credentials, e.g. -H 'Authorization: …'"],
  ['duplicate-credentials', 'send each credential header once'],
  ['invalid-key', 'the endpoint refuses the generated key (a maxKeyLength under 27?)'],
  ['missing-key', 'give the key header name with --key-header'],
  ['payload-too-large', 'send a smaller body with -d'],
  ['invalid-target', 'check the URL'],
];

function summarize(input: {
  url: string;
  method: string;
  keyHeader: string;
  key: string;
  concurrency: number;
  rows: CheckRow[];
  answers: ProbeAnswer[];
  marksReplays: boolean;
}): CheckReport {
  const { rows, answers, ...head } = input;
  const refusals = answers.filter((a) => [400, 409, 422].includes(a.status));
  const keyed = rows.filter(
    (r) => ['replay', 'concurrent', 'after-concurrent'].includes(r.id) && r.verdict !== 'not-applicable',
  );
  const duplicateExecuted = rows.some((r) => r.duplicate === true)
    ? true
    : keyed.length && keyed.every((r) => r.duplicate === false)
      ? false
      : null;
  const result: CheckResult = duplicateExecuted
    ? 'duplicate-executed'
    : rows.some((r) => r.verdict === 'fail')
      ? 'not-conformant'
      : 'idempotent';
  return {
    schema: 'idem-check/1',
    ...head,
    result,
    exitCode: CHECK_EXIT[result],
    duplicateExecuted,
    problemJson: refusals.length ? refusals.every((a) => a.problem) : null,
    rows,
  };
}
