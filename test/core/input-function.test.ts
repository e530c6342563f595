/**
 * A function (or symbol) as `input` cannot be fingerprinted: JSON drops it, so every such input
 * would hash alike and a changed payload would pass unnoticed. The engine refuses it with a
 * typed error instead.
 */
import { createIdem, InvalidInputError, memoryStore } from 'idem';
import { describe, expect, it } from 'vitest';

describe('input that cannot be fingerprinted', () => {
  it('a function input is an InvalidInputError, the action never runs', async () => {
    const idem = createIdem({ store: memoryStore() });
    let runs = 0;
    const action = async () => ++runs;
    const input = (() => 1) as unknown as Record<string, unknown>;
    await expect(idem.execute('k', action, { input })).rejects.toThrow(InvalidInputError);
    await expect(idem.execute('k2', action, { input: { nested: () => 2 } })).rejects.toThrow(
      InvalidInputError,
    );
    await expect(
      idem.consumeOnce({ consumer: 'c', messageId: 'm' }, action, { input: Symbol('x') }),
    ).rejects.toThrow(InvalidInputError);
    expect(runs).toBe(0);
    // data still works, and a changed payload is still caught
    await idem.execute('k3', action, { input: { amount: 1 } });
    await expect(idem.execute('k3', action, { input: { amount: 2 } })).rejects.toThrow(/fingerprint|input/i);
  });
});
