import { createIdem, fingerprintOf, InvalidKeyError, memoryStore } from 'idem';
import { describe, expect, it } from 'vitest';
import { canonicalJson, deriveKey, recordIdOf, validateKey } from '../../src/core/keys.ts';

describe('keys', () => {
  it('idem.key is namespace + SHA-256 of the canonical parts, deterministic and order-insensitive for objects', () => {
    const idem = createIdem({ store: memoryStore() });
    const a = idem.key('pay', 'CLAIM-12345', { allowed: 1240.55, member: 240.55 });
    const b = idem.key('pay', 'CLAIM-12345', { member: 240.55, allowed: 1240.55 });
    expect(a).toBe(b);
    expect(a).toMatch(/^pay:[0-9a-f]{64}$/);
    expect(idem.key('pay', 'CLAIM-12345', { allowed: 1240.56, member: 240.55 })).not.toBe(a);
    expect(idem.key('pay', 'a', 'b')).not.toBe(idem.key('pay', 'ab'));
  });

  it('validates client keys: 1-255 printable ASCII', () => {
    expect(validateKey('x'.repeat(255))).toHaveLength(255);
    for (const bad of ['', 'x'.repeat(256), 'tab\there', 'é', 'new\nline', 42, null, undefined]) {
      expect(() => validateKey(bad)).toThrow(InvalidKeyError);
    }
    expect(() => deriveKey('', [])).toThrow(InvalidKeyError);
    expect(() => deriveKey('n'.repeat(200), [])).toThrow(InvalidKeyError);
  });

  it('run rejects invalid keys with InvalidKeyError (400) before touching the store', async () => {
    const idem = createIdem({ store: memoryStore() });
    const err = await idem.run('', () => 1).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidKeyError);
    expect(err.status).toBe(400);
  });

  it('record ids hash scope and key together, and never contain either', () => {
    const id = recordIdOf(['tenant-a'], 'order-1');
    expect(id).not.toContain('order-1');
    expect(id).not.toContain('tenant-a');
    expect(recordIdOf(['tenant-b'], 'order-1')).not.toBe(id);
    expect(recordIdOf(['tenant', 'a'], 'x')).not.toBe(recordIdOf(['tenanta'], 'x'));
  });
});

describe('fingerprints', () => {
  it('uses RFC 8785 canonical JSON: key order and number spelling do not matter', () => {
    expect(canonicalJson({ b: 1, a: [1e2, 'x'] })).toBe('{"a":[100,"x"],"b":1}');
    expect(fingerprintOf({ b: 1, a: 2 })).toBe(fingerprintOf({ a: 2, b: 1 }));
    expect(fingerprintOf({ a: 1 })).not.toBe(fingerprintOf({ a: '1' }));
  });

  it('excludes configured paths, including wildcards', () => {
    const base = { amount: 10, traceId: 't1', meta: { sentAt: 1 }, items: [{ sku: 'a', nonce: 1 }] };
    const other = { amount: 10, traceId: 't2', meta: { sentAt: 2 }, items: [{ sku: 'a', nonce: 2 }] };
    const exclude = ['traceId', 'meta.sentAt', 'items.*.nonce'];
    expect(fingerprintOf(base, exclude)).toBe(fingerprintOf(other, exclude));
    expect(fingerprintOf(base)).not.toBe(fingerprintOf(other));
    expect(fingerprintOf({ ...base, amount: 11 }, exclude)).not.toBe(fingerprintOf(base, exclude));
  });

  it('fingerprints values JSON cannot carry without throwing, and tells them apart', () => {
    const values = [10n, new Uint8Array([1]), new Date(0), new Map([[1, 2]]), new Set([1]), Number.NaN];
    const prints = values.map((v) => fingerprintOf({ v }));
    expect(new Set(prints).size).toBe(values.length);
    expect(fingerprintOf({ v: 10n })).not.toBe(fingerprintOf({ v: '10' }));
  });
});
