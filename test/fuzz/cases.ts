/**
 * Seeded generation of hostile HTTP requests for the fuzz slice. A case is the exact bytes of
 * one request plus what the oracle needs: the family it came from (failures are grouped by
 * it), the logical key + scope it must run at most once under, and any status it must get.
 * Cases come in groups that share a key; a group is sent in order or all at once.
 */

/** Seed of the slice: `IDEM_FUZZ_SEED` (decimal or 0x hex) replays a run. */
export const SEED = Number(process.env.IDEM_FUZZ_SEED ?? 0x1de3_2026) >>> 0;

/** A small fast PRNG (mulberry32): the same seed gives the same cases on every machine. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T,
    chance: (p: number) => next() < p,
  };
}
export type Rng = ReturnType<typeof prng>;

export type Framing = 'length' | 'chunked' | 'short' | 'long' | 'both' | 'bad-chunk' | 'none';

export interface FuzzCase {
  id: string;
  family: string;
  /** What varies inside the family (the target, the key's flaw…), for the report. */
  variant: string;
  method: string;
  target: string;
  /** Header lines as sent; values are written as UTF-8 bytes. */
  headers: [string, string][];
  body: Buffer;
  framing: Framing;
  /** The client's key + normalized credentials: the handler may run at most once per value. */
  logical?: string;
  /** Statuses idem must answer with (a transport-level 400 from Node's parser also passes). */
  expect?: number[];
  /** Send over fetch instead of a raw socket (only for cases fetch can express). */
  viaFetch?: boolean;
  /** Send the bytes in small pieces, as a client that keeps sending does. */
  trickle?: boolean;
}

export interface FuzzGroup {
  cases: FuzzCase[];
  concurrent: boolean;
}

const TARGETS = [
  '/payments',
  '/payments?a=1&b=%20',
  '*',
  '//[x/payments',
  '//a:99999/p',
  'http://h/payments',
  'http://127.0.0.1/payments',
  'ftp://h/p',
  '//evil.example/p',
  '/%zz/%',
  '/%00/%ff',
  '/a/../../b',
  '/p?%',
  '/p#frag',
  `/${'a'.repeat(4000)}`,
  `/p?q=${'%41'.repeat(2000)}`,
  '/\u00e9t\u00e9',
];

const BAD_KEYS: [string, string][] = [
  ['empty', ''],
  ['blank', '   '],
  ['unterminated', '"abc'],
  ['list', 'a,b'],
  ['sf-list', '"a", "b"'],
  ['bad-escape', '"a\\x"'],
  ['overlong', 'k'.repeat(256)],
  ['overlong-quoted', `"${'q'.repeat(300)}"`],
  ['space', 'a b'],
  ['non-ascii', 'ключ-1'],
  ['latin1', 'caf\u00e9'],
  ['emoji', 'key-\u{1f4a5}'],
  ['empty-quoted', '""'],
];

const METHODS = ['PUT', 'DELETE', 'GET', 'OPTIONS', 'HEAD', 'PoSt', 'post', 'FOO', 'QUERY', 'PATCH'];

/** Bodies a JSON API may be sent; `huge` ones are over every default body limit. */
const BODIES: [string, () => Buffer][] = [
  ['json', () => Buffer.from('{"amount":100,"currency":"eur"}')],
  ['proto', () => Buffer.from('{"__proto__":{"admin":true},"amount":1}')],
  ['lone-surrogate', () => Buffer.from('{"a":"\\ud800"}')],
  ['lone-low-surrogate', () => Buffer.from('{"a":"x\\udc00y"}')],
  ['deep-array', () => Buffer.from(`${'['.repeat(10_000)}${']'.repeat(10_000)}`)],
  ['deep-object', () => Buffer.from(`${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`)],
  ['truncated', () => Buffer.from('{"amount": 10, "items": [1, 2')],
  ['huge-number', () => Buffer.from('{"n":1e400,"m":-1e400,"k":123456789012345678901234567890}')],
  ['duplicate-members', () => Buffer.from('{"a":1,"a":2}')],
  ['invalid-utf8', () => Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
  ['empty', () => Buffer.alloc(0)],
  ['not-json', () => Buffer.from('amount=1&amount=2')],
  ['nul', () => Buffer.from('{"a":"\\u0000"}')],
];

/** Builds the groups of one slice: `count` requests in all, deterministic for `seed`. */
export function generateGroups(seed: number, count: number, prefix: string): FuzzGroup[] {
  const rng = prng(seed);
  const groups: FuzzGroup[] = [];
  let total = 0;
  let g = 0;
  while (total < count) {
    const group = makeGroup(rng, `${prefix}${g++}`);
    groups.push(group);
    total += group.cases.length;
  }
  return groups;
}

function makeGroup(rng: Rng, gid: string): FuzzGroup {
  const token = `tok-${gid}`;
  const key = `fz-${gid}`;
  const auth: [string, string] = ['Authorization', `Bearer ${token}`];
  const logical = `${key}|bearer ${token}`;
  const json: [string, string] = ['Content-Type', 'application/json'];
  const base = (family: string, variant: string, over: Partial<FuzzCase> = {}): FuzzCase => ({
    id: '',
    family,
    variant,
    method: 'POST',
    target: '/payments',
    headers: [['Idempotency-Key', key], auth, json],
    body: Buffer.from(`{"amount":${rng.int(1000)},"group":"${gid}"}`),
    framing: 'length',
    logical,
    ...over,
  });
  const number = (cases: FuzzCase[], concurrent: boolean): FuzzGroup => {
    cases.forEach((c, i) => {
      c.id = `${gid}.${i}`;
    });
    return { cases, concurrent };
  };
  const roll = rng.int(100);

  if (roll < 12) {
    // The same request, several times, sequential or all at once.
    const c = base('duplicates', 'same-bytes', { viaFetch: rng.chance(0.3) });
    const n = 2 + rng.int(5);
    return number(
      Array.from({ length: n }, () => ({ ...c })),
      rng.chance(0.5),
    );
  }
  if (roll < 24) {
    // One key and one principal, the credential spelled differently each time.
    const spellings: [string, string][][] = [
      [['Authorization', `Bearer ${token}`]],
      [['authorization', `bearer ${token}`]],
      [['AUTHORIZATION', `BEARER ${token}`]],
      [['Authorization', `Bearer  ${token}`]],
      [['Authorization', `Bearer \t${token}`]],
      [['Authorization', `  Bearer ${token}  `]],
    ];
    const first = base('credential-spelling', 'Bearer');
    const cases = [first];
    for (let i = 0; i < 1 + rng.int(3); i++) {
      const spelling = rng.pick(spellings.slice(1));
      cases.push({
        ...first,
        variant: JSON.stringify(spelling[0]?.[1].replace(token, 'T')),
        headers: [['Idempotency-Key', key], json, ...spelling],
      });
    }
    return number(cases, rng.chance(0.3));
  }
  if (roll < 30) {
    // Two Authorization lines: ambiguous credentials, refused with 400.
    const second = rng.chance(0.5) ? `Bearer ${token}` : `Bearer other-${gid}`;
    const c = base('credential-duplicate-lines', second.endsWith(token) ? 'same' : 'different', {
      headers: [['Idempotency-Key', key], json, auth, ['Authorization', second]],
      expect: [400],
    });
    return number([c, { ...c }], false);
  }
  if (roll < 42) {
    const [name, value] = rng.pick(BAD_KEYS);
    const dup = rng.chance(0.15);
    const headers: [string, string][] = dup
      ? [['Idempotency-Key', key], ['Idempotency-Key', `${key}-b`], auth, json]
      : [['Idempotency-Key', value], auth, json];
    const c = base('key-malformed', dup ? 'duplicate-lines' : name, {
      headers,
      logical: undefined,
      expect: [400],
    });
    return number([c], false);
  }
  if (roll < 56) {
    const target = rng.pick(TARGETS);
    const c = base(
      'target',
      JSON.stringify(target.length > 40 ? `${target.slice(0, 20)}…(${target.length})` : target),
      {
        target,
      },
    );
    return number([c, { ...c }], rng.chance(0.3));
  }
  if (roll < 64) {
    const method = rng.pick(METHODS);
    const covered = method === 'PATCH';
    const c = base('method', method, { method, ...(covered ? {} : { logical: undefined }) });
    if (method === 'GET' || method === 'HEAD') c.body = Buffer.alloc(0);
    return number([c, { ...c }], false);
  }
  if (roll < 80) {
    const [name, make] = rng.pick(BODIES);
    const type = rng.pick(['application/json', 'text/plain', 'application/json; charset=utf-16', '']);
    const headers: [string, string][] = [['Idempotency-Key', key], auth];
    if (type) headers.push(['Content-Type', type]);
    const c = base('body', name, { body: make(), headers, viaFetch: rng.chance(0.2) });
    return number([c, { ...c }], rng.chance(0.3));
  }
  if (roll < 86) {
    // One key, two bodies that differ only where a careless fingerprint does not look.
    // The second must never replay the first: 409/422 under the same key, or 400 invalid-body
    // for bodies that cannot be fingerprinted at all (lone surrogates are refused, never claimed).
    const pairs: [string, string, string, number[]][] = [
      ['proto', '{"__proto__":{"x":1},"a":1}', '{"__proto__":{"x":2},"a":1}', [409, 422]],
      ['lone-surrogate', '{"a":"\\ud800"}', '{"a":"\\ud801"}', [400]],
      ['huge-number', '{"n":1e400}', '{"n":2e400}', [409, 422]],
      ['big-integer', '{"id":12345678901234567891}', '{"id":12345678901234567890}', [409, 422]],
      ['nested-proto', '{"a":{"__proto__":[1]}}', '{"a":{"__proto__":[2]}}', [409, 422]],
    ];
    const [name, a, b, expect] = rng.pick(pairs);
    const first = base('fingerprint', name, { body: Buffer.from(a) });
    const second = { ...first, body: Buffer.from(b), expect };
    return number([first, second], false);
  }
  if (roll < 94) {
    const framing = rng.pick<Framing>(['chunked', 'short', 'long', 'both', 'bad-chunk', 'none']);
    const c = base('framing', framing, { framing });
    return number([c], false);
  }
  if (roll < 97) {
    // Over the body limit (1 MiB by default), sent whole by a client that keeps sending.
    const framing = rng.pick<Framing>(['length', 'chunked']);
    const trickle = rng.chance(0.5);
    const c = base('over-limit', `${framing}${trickle ? '+keeps-sending' : ''}`, {
      body: Buffer.alloc((trickle ? 3 : 1) * 1024 * 1024 + 1 + rng.int(512 * 1024), 0x61),
      framing,
      trickle,
      expect: [413],
    });
    return number([c], false);
  }
  // Many concurrent duplicates of one request.
  const c = base('concurrent', 'burst');
  return number(
    Array.from({ length: 8 }, () => ({ ...c })),
    true,
  );
}

/** The exact bytes of `c` on the wire (`Connection: close`, tagged with the case id). */
export function toBytes(c: FuzzCase): Buffer {
  const lines = [`${c.method} ${c.target} HTTP/1.1`, 'Host: 127.0.0.1'];
  for (const [name, value] of c.headers) lines.push(`${name}: ${value}`);
  lines.push(`X-Fuzz-Case: ${c.id}`);
  if (c.logical) lines.push(`X-Fuzz-Logical: ${Buffer.from(c.logical).toString('base64url')}`);
  lines.push('Connection: close');
  const body = c.body;
  let payload: Buffer = body;
  switch (c.framing) {
    case 'length':
      lines.push(`Content-Length: ${body.length}`);
      break;
    case 'chunked':
      lines.push('Transfer-Encoding: chunked');
      payload = chunked(body);
      break;
    case 'short':
      lines.push(`Content-Length: ${Math.max(0, body.length - 5)}`);
      break;
    case 'long':
      lines.push(`Content-Length: ${body.length + 100}`);
      break;
    case 'both':
      lines.push(`Content-Length: ${body.length}`, 'Transfer-Encoding: chunked');
      payload = chunked(body);
      break;
    case 'bad-chunk':
      lines.push('Transfer-Encoding: chunked');
      payload = Buffer.concat([Buffer.from('zz\r\n'), body, Buffer.from('\r\n0\r\n\r\n')]);
      break;
    case 'none':
      break;
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), payload]);
}

function chunked(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < body.length; i += 64 * 1024) {
    const piece = body.subarray(i, i + 64 * 1024);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}
