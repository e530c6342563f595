/**
 * Every problem idem answers with is readable by RFC 9457 consumers (type, title, status,
 * detail), by code-switching clients (a stable `code`), and by Stripe-shaped clients (an
 * `error` member), which stripe-node turns into a typed exception.
 */
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import {
  PROBLEM_BASE,
  PROBLEMS,
  type ProblemType,
  problemBody,
  problemResponse,
} from '../../src/http/problem.ts';

const TYPES = Object.keys(PROBLEMS) as ProblemType[];

const EXPECTED: Record<ProblemType, { status: number; code: string; errorType: string }> = {
  'missing-key': { status: 400, code: 'idempotency_key_missing', errorType: 'invalid_request_error' },
  'invalid-key': { status: 400, code: 'idempotency_key_invalid', errorType: 'invalid_request_error' },
  'payload-too-large': { status: 413, code: 'payload_too_large', errorType: 'invalid_request_error' },
  'fingerprint-mismatch': { status: 422, code: 'idempotency_key_reused', errorType: 'idempotency_error' },
  conflict: { status: 409, code: 'idempotency_key_in_use', errorType: 'invalid_request_error' },
  'store-unavailable': { status: 503, code: 'idempotency_store_unavailable', errorType: 'api_error' },
  'outcome-too-large': { status: 500, code: 'outcome_too_large', errorType: 'api_error' },
  'response-incomplete': { status: 500, code: 'response_incomplete', errorType: 'api_error' },
  'handler-error': { status: 500, code: 'handler_error', errorType: 'api_error' },
  'upstream-unavailable': { status: 502, code: 'upstream_unavailable', errorType: 'api_error' },
  'indeterminate-outcome': { status: 502, code: 'indeterminate_outcome', errorType: 'api_error' },
  'upstream-timeout': { status: 504, code: 'upstream_timeout', errorType: 'api_error' },
  'invalid-target': { status: 400, code: 'invalid_request_target', errorType: 'invalid_request_error' },
  'invalid-body': { status: 400, code: 'invalid_body', errorType: 'invalid_request_error' },
  'duplicate-credentials': { status: 400, code: 'duplicate_credentials', errorType: 'invalid_request_error' },
  'missing-credentials': { status: 401, code: 'missing_credentials', errorType: 'authentication_error' },
  'internal-error': { status: 500, code: 'internal_error', errorType: 'api_error' },
  'admin-token-required': { status: 401, code: 'admin_token_required', errorType: 'authentication_error' },
};

describe('problem bodies', () => {
  it('the table covers every problem', () => {
    expect(TYPES.sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const type of TYPES) {
    it(`${type}: RFC 9457 members, a default detail, a stable code and a Stripe-shaped error`, () => {
      const { status, code, errorType } = EXPECTED[type];
      const body = problemBody(type);
      expect(body.type).toBe(PROBLEM_BASE + type);
      expect(body.status).toBe(status);
      expect(body.title).toBe(PROBLEMS[type].title);
      expect(body.detail.length).toBeGreaterThan(20);
      expect(body.code).toBe(code);
      expect(body.error).toEqual({
        type: errorType,
        code,
        message: `${PROBLEMS[type].title}: ${body.detail}`,
        doc_url: PROBLEM_BASE + type,
      });
    });
  }

  it('a given detail wins over the default; an empty one does not', () => {
    expect(problemBody('conflict', 'why').detail).toBe('why');
    expect(problemBody('conflict', 'why').error.message).toBe(`${PROBLEMS.conflict.title}: why`);
    expect(problemBody('conflict', '').detail).toBe(PROBLEMS.conflict.detail);
  });

  it('the base moves the type URI and the error’s doc_url together', () => {
    const body = problemBody('invalid-key', undefined, 'https://api.example.com/p/');
    expect(body.type).toBe('https://api.example.com/p/invalid-key');
    expect(body.error.doc_url).toBe(body.type);
  });

  it('codes are unique, so a client can switch on them', () => {
    const codes = TYPES.map((t) => PROBLEMS[t].code);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('problemResponse: problem+json, no-store, the status, extra headers and the full body', async () => {
    const res = problemResponse('fingerprint-mismatch', { headers: { 'x-should-retry': 'false' } });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(await res.json()).toEqual(problemBody('fingerprint-mismatch'));
  });
});

describe('stripe-node reads every problem as a typed error', () => {
  // stripe-node's own error factory (v1 API): it picks the class by status, then by error.type.
  const classOf = (type: ProblemType) => {
    const body = problemBody(type);
    return Stripe.errors.StripeError.generate({ ...body.error, statusCode: body.status });
  };

  it('400s are StripeInvalidRequestError, 401 StripeAuthenticationError; 422, 409 and 5xx StripeAPIError with the raw type and code', () => {
    for (const type of TYPES) {
      const error = classOf(type);
      expect(error).toBeInstanceOf(Stripe.errors.StripeError);
      expect(error.code).toBe(PROBLEMS[type].code);
      expect(error.rawType).toBe(PROBLEMS[type].errorType);
      expect(error.message).toContain(PROBLEMS[type].title);
      const status = PROBLEMS[type].status;
      const expected =
        status === 400
          ? 'StripeInvalidRequestError'
          : status === 401
            ? 'StripeAuthenticationError'
            : 'StripeAPIError';
      expect(error.type).toBe(expected);
    }
  });

  it('the key-reuse problem is an idempotency_error: StripeIdempotencyError where Stripe’s status rules allow it', () => {
    // stripe-node v1 maps idempotency_error to StripeIdempotencyError only on a 400 (Stripe's
    // status for key reuse); idem answers 422 per the IETF draft, so v1 raises StripeAPIError
    // with rawType 'idempotency_error'. The v2 factory switches on the type first.
    const body = problemBody('fingerprint-mismatch');
    const v1at400 = Stripe.errors.StripeError.generate({ ...body.error, statusCode: 400 });
    expect(v1at400).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
  });
});
