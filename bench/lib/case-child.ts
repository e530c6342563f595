/**
 * The child side of bench/lib/isolated.ts: builds one implementation and runs the segments the
 * parent asks for, one at a time, measuring its own CPU.
 *
 * ```
 * node --conditions=idem-source case-child.ts <module path> <export name> <args as JSON>
 * ```
 *
 * @module
 */
import type { CaseFactory, CaseSet, FromChild, ToChild } from './isolated.ts';
import { runSegment } from './measure.ts';

const [modulePath, exportName, json] = process.argv.slice(2);
const send = (m: FromChild) => process.send!(m);

let set: CaseSet;
try {
  const mod = (await import(modulePath!)) as Record<string, CaseFactory>;
  set = await mod[exportName!]!(JSON.parse(json!) as never);
} catch (error) {
  send({ kind: 'failed', error: String((error as Error)?.stack ?? error) });
  process.exit(1);
}
const next = new Map<string, number>();

process.on('message', async (m: ToChild) => {
  try {
    if (m.kind === 'segment') {
      const op = set.ops[m.op];
      if (!op) throw new Error(`no op "${m.op}"`);
      const { next: after, ...count } = await runSegment(
        op,
        m.concurrency,
        m.ms,
        m.record,
        next.get(m.op) ?? 0,
      );
      next.set(m.op, after);
      send({ id: m.id, kind: 'result', value: count });
    } else if (m.kind === 'runs') {
      send({ id: m.id, kind: 'result', value: set.actionRuns?.() ?? 0 });
    } else {
      await set.close();
      send({ id: m.id, kind: 'result', value: null });
      process.disconnect?.();
      // a client that keeps a handle open must not keep the parent waiting
      setTimeout(() => process.exit(0), 2000).unref();
    }
  } catch (error) {
    send({ id: m.id, kind: 'error', error: String((error as Error)?.stack ?? error) });
  }
});
send({ kind: 'ready', ops: Object.keys(set.ops) });
