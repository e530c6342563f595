/**
 * The chaos harness: thousands of logical operations, each delivered 3–5 times at once — library
 * calls, queue messages (`consumeOnce`), two-step workflow runs, HTTP through three `idem serve`
 * gateways — over one store, while faults are injected —
 * SIGKILL and SIGSTOP/SIGCONT of workers and gateways mid-action, an upstream that answers 5xx,
 * stalls or cuts the connection after acting, restarts of the store server and cut connections
 * (private Redis, PostgreSQL and dynalite servers started here), and app clocks skewed by minutes
 * (DynamoDB: by less than the store's clockSkewMs). Then
 * it checks the history and the side-effect ledger (see check.ts).
 *
 * ```
 * npm run chaos                       # every store, 10,000 operations each
 * npm run chaos -- --quick            # the profile npm test runs
 * npm run chaos -- --store redis --ops 2000 --seed 7
 * ```
 *
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdem } from 'idem';
import { createTable } from '../../src/stores/dynamodb/index.ts';
import { storeFromSpec } from '../../src/stores/spec.ts';
import { prng } from '../fuzz/cases.ts';
import { dynamoClient } from '../helpers/dynalite.ts';
import { type ChaosReport, checkRun, type Delivery, type Layer, type SentSignal } from './check.ts';
import { type GatewayProc, Lost, startGateway, startWorker, type Worker } from './processes.ts';
import {
  canRunPrivatePostgres,
  freePort,
  type PrivateService,
  privateDynalite,
  privatePostgres,
  privateRedis,
} from './services.ts';

export type ChaosStore = 'sqlite' | 'postgres' | 'redis' | 'dynamodb';

/**
 * DynamoDB judges leases on the callers' clocks, `clockSkewMs` (1000 by default, as the
 * `dynamodb://` spec leaves it) late: its workers' clocks are skewed by at most this much either
 * way, so no two differ by more than the store allows for.
 */
const DYNAMODB_SKEW_MS = 400;

export interface ChaosOptions {
  store: ChaosStore;
  ops: number;
  seed: number;
  workers: number;
  gateways: number;
  leaseMs: number;
  /** Ops in flight at once. */
  window: number;
  /** A fault every this many ms while operations run. */
  faultEveryMs: number;
  /**
   * Largest clock skew of a worker or gateway (Postgres and Redis keep time on the server;
   * DynamoDB's workers get at most ±400 ms, within the store's clockSkewMs).
   */
  skewMs: number;
  /** The checker's self-test: workers run actions without idem. */
  bypass?: boolean;
  /**
   * The checker's other self-test, a deliberately broken setup: skew the clocks of workers and
   * gateways even on a store that keeps time on the app's clock (SQLite), and on DynamoDB by
   * the full `skewMs` (past its clockSkewMs), so a fast clock takes over the leases of live
   * holders. The checker must count premature takeovers.
   */
  skewAppClock?: boolean;
  log?: (line: string) => void;
}

export const QUICK: Omit<ChaosOptions, 'store' | 'seed'> = {
  ops: 250,
  workers: 3,
  gateways: 3,
  leaseMs: 600,
  window: 24,
  faultEveryMs: 250,
  skewMs: 3 * 60_000,
};
export const FULL: Omit<ChaosOptions, 'store' | 'seed'> = { ...QUICK, ops: 10_000, workers: 4, window: 48 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs one store's chaos and answers its report. */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => {});
  const rand = prng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), `idem-chaos-${o.store}-`));
  const faults: Record<string, number> = {};
  /** Processes that died without being killed: an unhandled error in idem (or the harness). */
  const crashes: string[] = [];
  const onCrash = (what: string) => crashes.push(what);
  const count = (f: string) => (faults[f] = (faults[f] ?? 0) + 1);
  let service: PrivateService | undefined;
  const started = Date.now();
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  try {
    let spec: string;
    if (o.store === 'sqlite') spec = `sqlite:${join(dir, 'chaos.db')}`;
    else if (o.store === 'dynamodb') {
      service = await privateDynalite();
      // dynalite checks no credentials; the SDK still wants some, from the environment
      process.env.AWS_ACCESS_KEY_ID ??= 'idem-chaos';
      process.env.AWS_SECRET_ACCESS_KEY ??= 'idem-chaos';
      const client = dynamoClient(service.url);
      await createTable({ client, table: 'chaos', timeToLive: false });
      client.destroy();
      spec = `dynamodb://chaos?region=us-east-1&endpoint=${encodeURIComponent(service.url)}`;
    } else if (o.store === 'redis') {
      service = await privateRedis();
      spec = `${service.url}?prefix=chaos`;
    } else {
      if (!canRunPrivatePostgres())
        throw new Error('cannot run a private PostgreSQL here (binaries or the postgres user missing)');
      service = await privatePostgres();
      spec = `${service.url}?schema=chaos`;
    }
    cleanups.push(() => service?.stop());
    // SQLite keeps time on the app's clock: one machine, one clock (unless the setup is broken on purpose)
    const skewed = o.store !== 'sqlite' || !!o.skewAppClock;
    const skewMs =
      o.store === 'dynamodb' && !o.skewAppClock ? Math.min(o.skewMs, DYNAMODB_SKEW_MS) : o.skewMs;
    const skewOf = () => (skewed ? (rand.next() * 2 - 1) * skewMs : 0);

    // the upstream behind the gateways: its ledger line is the effect
    const upstreamLedger: { op: number; n: number }[] = [];
    let executions = 0;
    const upstream = http.createServer((req, res) => {
      const op = Number(req.headers['x-chaos-op']);
      req.resume();
      req.on('end', () => {
        const r = rand.next();
        if (r < 0.05) return void res.writeHead(503).end('try later'); // released: did nothing
        const n = ++executions;
        upstreamLedger.push({ op, n });
        const body = JSON.stringify({ op, n });
        if (r < 0.08) return void res.socket?.destroy(); // acted, then the connection died
        if (r < 0.11) return void res.writeHead(500, { 'content-type': 'application/json' }).end(body);
        const reply = () => res.writeHead(201, { 'content-type': 'application/json' }).end(body);
        if (r < 0.16) setTimeout(reply, 300);
        else reply();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    cleanups.push(
      () =>
        new Promise((r) => {
          upstream.closeAllConnections();
          upstream.close(r);
        }),
    );
    const config = join(dir, 'gateway.json');
    writeFileSync(
      config,
      JSON.stringify({
        upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
        store: spec,
        purgeEvery: false,
        upstreamTimeout: '5s',
        defaults: { lease: o.leaseMs, concurrency: 'wait', waitTimeout: '20s', ttl: '1h' },
        routes: [{ path: '/*', key: 'required' }],
      }),
    );

    // processes
    let generation = 0;
    const ledgerOf = () => join(dir, `ledger-${generation++}.log`);
    const workers: Worker[] = [];
    for (let i = 0; i < o.workers; i++)
      workers[i] = await startWorker(
        i,
        { store: spec, ledger: ledgerOf(), leaseMs: o.leaseMs, bypass: o.bypass },
        skewOf(),
        onCrash,
      );
    const ports = await Promise.all(Array.from({ length: o.gateways }, () => freePort()));
    const gateways: GatewayProc[] = await Promise.all(
      ports.map((p) => startGateway(p, config, skewOf(), onCrash)),
    );
    cleanups.push(() => Promise.all(workers.map((w) => w.kill())));
    cleanups.push(() => Promise.all(gateways.map((g) => g.kill())));

    // faults are injected until the operations are done (the fault loop below)
    let injecting = true;
    let faultsEndedAt = 0;

    // one respawn per process slot at a time: the fault loop and the heal step may both ask
    const respawning = new Map<string, Promise<void>>();
    const once = (slot: string, fn: () => Promise<void>) => {
      const running = respawning.get(slot);
      if (running) return running;
      const p = fn().finally(() => respawning.delete(slot));
      respawning.set(slot, p);
      return p;
    };
    const respawnWorker = (i: number) =>
      once(`w${i}`, async () => {
        workers[i] = await startWorker(
          i,
          { store: spec, ledger: ledgerOf(), leaseMs: o.leaseMs, bypass: o.bypass },
          skewOf(),
          onCrash,
        );
      });
    const respawnGateway = (i: number) =>
      once(`g${i}`, async () => {
        await (gateways[i] as GatewayProc).exited;
        // `idem serve --store-wait` rides out a short store restart; a longer outage (a loaded
        // machine restarting the store every few seconds) ends the start with an error. Start again,
        // as a supervisor would, for as long as faults are injected and a minute after: a gateway
        // that still cannot start is a crash in the report, not an unhandled rejection of the run
        for (;;) {
          try {
            gateways[i] = await startGateway(ports[i] as number, config, skewOf(), onCrash);
            return;
          } catch (e) {
            if (!injecting && Date.now() > faultsEndedAt + 60_000) {
              onCrash(
                `gateway g${i} could not restart within 60 s of the last fault: ${(e as Error).message}`,
              );
              return;
            }
            await sleep(250);
          }
        }
      });

    // one delivery, retried like a client or a queue would until it gets an answer
    const deliveries: Delivery[] = [];
    let nextD = 0;
    const deliver = async (op: number, layer: Layer, final: boolean): Promise<void> => {
      for (let attempt = 0; attempt < 40; attempt++) {
        const d = nextD++;
        if (layer !== 'http') {
          const w = rand.pick(workers.filter((x) => x.alive()));
          if (!w) {
            await sleep(50);
            continue;
          }
          try {
            const a = await w.send(op, d, rand.int(3) === 0 ? rand.int(o.leaseMs * 2) : rand.int(20), layer);
            if (a.ok)
              return void deliveries.push({
                op,
                layer,
                final,
                ok: true,
                value: JSON.stringify(a.value),
                replayed: !!a.replayed,
              });
            deliveries.push({ op, layer, final, ok: false, error: a.code ?? 'error' });
          } catch (e) {
            deliveries.push({
              op,
              layer,
              final,
              ok: false,
              error: e instanceof Lost ? 'worker-died' : String(e),
            });
          }
        } else {
          const g = rand.pick(gateways);
          try {
            const res = await fetch(`${g.url}/op/${op}`, {
              method: 'POST',
              headers: {
                'idempotency-key': `chaos-http-${op}`,
                'x-chaos-op': String(op),
                authorization: 'Bearer chaos',
              },
              body: JSON.stringify({ op }),
              signal: AbortSignal.timeout(final ? 30_000 : 8_000),
            });
            const body = await res.text();
            if ([409, 425, 429, 503].includes(res.status)) {
              deliveries.push({ op, layer, final, ok: false, error: `http ${res.status}` });
            } else {
              return void deliveries.push({
                op,
                layer,
                final,
                ok: true,
                value: `${res.status} ${body}`,
                replayed: res.headers.get('idempotent-replayed') === 'true',
              });
            }
          } catch (e) {
            deliveries.push({ op, layer, final, ok: false, error: `fetch: ${(e as Error).name}` });
          }
        }
        await sleep(50 + rand.int(150));
      }
    };

    // faults, while the operations run
    const frozen = new Set<Worker | GatewayProc>();
    /** What the checker needs to tell a takeover of a dead or frozen holder from one of a live one. */
    const signals: SentSignal[] = [];
    const storeFaults: number[] = [];
    const sent = (p: Worker | GatewayProc, kind: SentSignal['kind']) => {
      if ('pid' in p) signals.push({ pid: p.pid, kind, at: Date.now() });
    };
    const faultLoop = (async () => {
      let lastStoreFault = 0;
      while (injecting) {
        await sleep(o.faultEveryMs);
        if (!injecting) break;
        const kind = rand.pick([
          'kill-worker',
          'stop-worker',
          'kill-gateway',
          'stop-gateway',
          'store-restart',
          'cut-connections',
        ] as const);
        const wi = rand.int(workers.length);
        const gi = rand.int(gateways.length);
        if (kind === 'kill-worker' && workers[wi]?.alive()) {
          sent(workers[wi], 'kill');
          workers[wi].kill();
          count(kind);
          void sleep(50).then(() => respawnWorker(wi));
        } else if (kind === 'stop-worker' && workers[wi]?.alive() && !workers[wi].stopped) {
          const w = workers[wi];
          sent(w, 'stop');
          w.stop();
          frozen.add(w);
          count(kind);
          void sleep(o.leaseMs * (1.5 + rand.next())).then(() => {
            sent(w, 'cont');
            w.cont();
            frozen.delete(w);
          });
        } else if (kind === 'kill-gateway' && gateways[gi]?.alive() && !gateways[gi].stopped) {
          gateways[gi].kill();
          count(kind);
          void respawnGateway(gi);
        } else if (kind === 'stop-gateway' && gateways[gi]?.alive() && !gateways[gi].stopped) {
          const g = gateways[gi];
          g.stop();
          frozen.add(g);
          count(kind);
          void sleep(o.leaseMs * (1.5 + rand.next())).then(() => {
            g.cont();
            frozen.delete(g);
          });
        } else if (kind === 'store-restart' && service && Date.now() - lastStoreFault > 3000) {
          lastStoreFault = Date.now();
          count(kind);
          storeFaults.push(Date.now());
          // a store that does not come back fails the run (as a crash), with everything cleaned up
          await service.restart().catch((e: Error) => onCrash(`store restart failed: ${e.message}`));
        } else if (kind === 'cut-connections' && service) {
          count(kind);
          storeFaults.push(Date.now());
          await service.cutConnections().catch(() => {});
        }
      }
    })();

    // the operations: a window of ops in flight, each delivered 3–5 times at once
    const layerOf = (r: number): Layer =>
      o.gateways > 0 && r < 0.3 ? 'http' : r < 0.55 ? 'lib' : r < 0.8 ? 'inbox' : 'workflow';
    const layers = Array.from({ length: o.ops }, () => layerOf(rand.next()));
    let next = 0;
    const lane = async () => {
      while (next < o.ops) {
        const op = next++;
        const copies = 3 + rand.int(3);
        await Promise.all(Array.from({ length: copies }, () => deliver(op, layers[op] as Layer, false)));
        if (op % 500 === 0) log(`[chaos ${o.store}] op ${op}/${o.ops}`);
      }
    };
    await Promise.all(Array.from({ length: o.window }, lane));
    injecting = false;
    await faultLoop;
    faultsEndedAt = Date.now();
    for (const p of frozen) {
      sent(p, 'cont');
      p.cont();
    }
    await Promise.all(respawning.values());
    for (let i = 0; i < workers.length; i++) if (!workers[i]?.alive()) await respawnWorker(i);
    for (let i = 0; i < gateways.length; i++) if (!gateways[i]?.alive()) await respawnGateway(i);
    await sleep(o.leaseMs * 2 + 200);

    // the final pass: every op once more, on a healthy system
    next = 0;
    const finalLane = async () => {
      while (next < o.ops) {
        const op = next++;
        await deliver(op, layers[op] as Layer, true);
      }
    };
    await Promise.all(Array.from({ length: o.window }, finalLane));

    // stuck keys: library records still in progress after the final pass
    const idem = createIdem({ store: await storeFromSpec(spec) });
    const stuck: number[] = [];
    for (let op = 0; op < o.ops; op++) {
      if (layers[op] !== 'lib') continue;
      const record = await idem.store.get(idem.ids(`chaos-op-${op}`).recordId);
      if (record?.state !== 'completed') stuck.push(op);
    }
    await idem.close();
    // the signals and store faults the audit used, beside the ledgers (kept with IDEM_CHAOS_KEEP=1)
    writeFileSync(join(dir, 'signals.json'), JSON.stringify({ signals, storeFaults }));

    return checkRun({
      store: o.store,
      seed: o.seed,
      ops: o.ops,
      layers,
      deliveries,
      ledgerDir: dir,
      upstreamLedger,
      stuck,
      crashes,
      faults,
      durationMs: Date.now() - started,
      leaseMs: o.leaseMs,
      signals,
      storeFaults,
    });
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    // IDEM_CHAOS_KEEP=1 keeps the ledgers to look into a failed run
    if (process.env.IDEM_CHAOS_KEEP === '1') log(`[chaos ${o.store}] ledgers kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
