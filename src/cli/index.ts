#!/usr/bin/env node
/**
 * The `idem` command.
 *
 * ```
 * idem serve --upstream URL [--store SPEC] [--port N] [--host H] [--config FILE] [--preset openai|anthropic] [--admin-port N] [--workers N]
 * idem demo  [--port N] [--upstream-port N] [--store SPEC] [--delay MS]
 * idem check URL [--method M] [--data JSON] [-H 'name: value']… [--concurrency N] [--id-field PATH] [--json]
 * idem keys show KEY --store SPEC [--scope PART]… [-H 'name: value']… [--gateway [NS]] [--json]
 * idem keys list --store SPEC [--state S] [--older-than D] [--limit N] [--cursor C] [--json]
 * idem keys delete KEY --store SPEC [--scope PART]… [-H 'name: value']… [--gateway [NS]] [--yes] [--json]
 * idem stats --store SPEC [--json]
 * idem purge --store SPEC [--batch N] [--json]
 * idem --version
 * ```
 *
 * Every failure is one line on stderr (`idem: …`) and a non-zero exit code (src/cli/failure.ts).
 * See docs/cli.md.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { Command, InvalidArgumentError } from 'commander';
import { toMs } from '../core/duration.ts';
import type { ListedState } from '../core/store.ts';
import { createAdminServer } from '../gateway/admin-server.ts';
import { isServeWorker, onShutdown, reportFatal, reportReady, startWorkers } from '../gateway/cluster.ts';
import { answerAdminCalls, primaryAdminSource } from '../gateway/cluster-admin.ts';
import { clusterWake } from '../gateway/cluster-wake.ts';
import { adminListenerOf, type GatewayConfig, loadGatewayConfig } from '../gateway/config.ts';
import { createGateway, describeStore, type Gateway, listenOn } from '../gateway/index.ts';
import { applyPreset } from '../gateway/llm.ts';
import { logLevelOf } from '../gateway/log.ts';
import { checkStore, DEFAULT_SQLITE_PATH, storeFromSpec, waitForStore } from '../stores/spec.ts';
import { checkEndpoint } from './check.ts';
import { formatCheck } from './check-report.ts';
import { startDemo } from './demo.ts';
import { cliFailure, describeFailure, EXIT_FAILED, listenFailure } from './failure.ts';
import { formatList, formatStats, listRecords, readCounters, requireInspect, storeStats } from './inspect.ts';
import { describeKey, formatKey, type KeyScope, purgeStore, recordIdFor, scopeHashFor } from './keys.ts';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('idem')
  .description('Make side effects happen once: idempotency keys, stored outcomes and replays.')
  .version(version, '-v, --version', 'print the version')
  .exitOverride()
  .configureOutput({
    // Commander's own errors (unknown option, bad value…) as one line, like every other failure.
    outputError: (text, write) =>
      write(`idem: ${text.replace(/^error: /, '').trim()} (idem --help lists the commands and options)\n`),
  });

program
  .command('serve')
  .description('run the idempotency gateway (a reverse proxy) in front of a service')
  .option('--upstream <url>', 'the service behind the gateway, http(s)://host:port[/base]')
  .option(
    '--store <spec>',
    'memory | sqlite:PATH | postgres://… | redis://… (default sqlite:.idem/gateway.db)',
  )
  .option('--port <n>', 'port to listen on (default 8080)', port)
  .option('--host <host>', 'address to listen on (default 127.0.0.1; 0.0.0.0 for all)')
  .option('--config <file>', 'JSON config with routes and policies (flags override it)')
  .option('--preset <name>', 'LLM provider preset: openai | anthropic (--upstream defaults to its API)')
  .option(
    '--admin-token <token>',
    'bearer token for /metrics and /savings (or IDEM_ADMIN_TOKEN; without: loopback only)',
  )
  .option('--admin-port <n>', 'admin listener with the live dashboard at / (needs the admin token)', port)
  .option('--admin-host <host>', 'address of the admin listener (default 127.0.0.1)')
  .option(
    '--log-level <level>',
    'JSON log lines on stdout: fatal | error | warn | info (a line per request) | debug | trace | silent (or IDEM_LOG_LEVEL; default info)',
  )
  .option(
    '--workers <n>',
    'gateway processes sharing the port and the store (default: the number of cores)',
    workerCount,
  )
  .option(
    '--store-wait <duration>',
    'keep trying a store that does not answer at start-up for this long, e.g. 30s (default 0: refuse at once)',
    ageOption,
  )
  .action(
    async (opts: {
      upstream?: string;
      store?: string;
      port?: number;
      host?: string;
      config?: string;
      preset?: string;
      adminToken?: string;
      adminPort?: number;
      adminHost?: string;
      logLevel?: string;
      workers?: number;
      storeWait?: number;
    }) => {
      const file = opts.config ? await loadGatewayConfig(opts.config) : {};
      const config = {
        ...file,
        ...(opts.preset !== undefined && { preset: opts.preset as GatewayConfig['preset'] }),
        ...(opts.upstream !== undefined && { upstream: opts.upstream }),
        ...(opts.store !== undefined && { store: opts.store }),
        ...(opts.port !== undefined && { port: opts.port }),
        ...(opts.host !== undefined && { host: opts.host }),
        ...(opts.adminToken !== undefined && { adminToken: opts.adminToken }),
        ...(opts.adminPort !== undefined && { adminPort: opts.adminPort }),
        ...(opts.adminHost !== undefined && { adminHost: opts.adminHost }),
        ...(opts.logLevel !== undefined && { logLevel: opts.logLevel as GatewayConfig['logLevel'] }),
      };
      if (!config.upstream && config.preset === undefined)
        throw new InvalidArgumentError(
          '--upstream (or "upstream" in --config) is required, unless a --preset gives one',
        );
      const explicit = opts.workers ?? workersOf(config.workers);
      // a memory store lives in one process: workers would each keep their own, and a duplicate
      // sent to another worker would run again
      const perProcess = typeof config.store === 'string' && config.store.trim() === 'memory';
      if (perProcess && explicit !== undefined && explicit > 1)
        throw new InvalidArgumentError(
          `--store memory keeps keys in one process, so ${explicit} workers would not see each other's keys: use --workers 1, or a shared store (sqlite:PATH, postgres://…, redis://…)`,
        );
      const workers = explicit ?? (perProcess ? 1 : availableParallelism());
      const upstream = config.upstream ?? applyPreset(config).upstream;
      const preset = config.preset === undefined ? '' : `, preset ${config.preset}`;
      const banner = (url: string, n: string) =>
        `idem gateway ${url} → ${upstream} (store ${describeStore(config.store)}${preset}${n})`;
      const spec = typeof config.store === 'string' ? config.store : `sqlite:${DEFAULT_SQLITE_PATH}`;
      if (workers > 1 && !isServeWorker()) {
        // the config, the store and the port are checked here once, before any worker starts
        logLevelOf(config.logLevel, process.env.IDEM_LOG_LEVEL); // a bad level is refused here, once
        const probe = await createGateway({
          ...config,
          purgeEvery: false,
          logLevel: 'silent',
        } as GatewayConfig);
        await closeOnFailure(probe, () => waitForStore(probe.store, spec, opts.storeWait ?? 0));
        await probe.close();
        await portFree(config.port ?? 8080, config.host ?? '127.0.0.1').catch((error) => {
          throw cliFailure(listenFailure(error, '--port'), EXIT_FAILED, error);
        });
        const started = await startWorkers({ workers });
        // the dashboard and the admin API run here, over every worker's data (gathered by IPC)
        const listener = adminListenerOf(config as GatewayConfig);
        const adminServer = listener && createAdminServer(started.admin, { token: listener.token });
        const adminUrl =
          adminServer &&
          (await listenOn(adminServer, listener.port, listener.host).catch(async (error) => {
            await started.close();
            throw cliFailure(listenFailure(error, '--admin-port'), EXIT_FAILED, error);
          }));
        console.log(banner(started.url, `, ${workers} workers`));
        if (adminUrl) console.log(`idem dashboard ${adminUrl}/ (admin token required)`);
        onSignal(async () => {
          adminServer?.close();
          adminServer?.closeAllConnections();
          await started.close();
        });
        void started.failed.then((code) => process.exit(code));
        return;
      }
      const worker = isServeWorker();
      // a worker opens no admin listener: the primary serves it over every worker
      const { adminPort: _adminPort, ...workerConfig } = config;
      const gateway = worker
        ? await createGateway(
            { ...workerConfig, store: clusterWake(await storeFromSpec(spec)) } as GatewayConfig,
            { admin: primaryAdminSource() },
          )
        : await createGateway(config as GatewayConfig);
      const closeAll = worker
        ? () => gateway.close().then(() => gateway.store.close?.())
        : () => gateway.close();
      await closeOnFailure(gateway, () => waitForStore(gateway.store, spec, opts.storeWait ?? 0, worker));
      const url = await closeOnFailure(gateway, () =>
        gateway.listen().catch((error) => {
          const admin = config.adminPort !== undefined && error?.port === config.adminPort;
          throw cliFailure(listenFailure(error, admin ? '--admin-port' : '--port'), EXIT_FAILED, error);
        }),
      );
      if (worker) {
        answerAdminCalls(gateway.admin); // this worker's own data, for the primary
        onShutdown(closeAll);
        reportReady(url);
        return;
      }
      console.log(banner(url, ''));
      if (gateway.adminUrl) console.log(`idem dashboard ${gateway.adminUrl}/ (admin token required)`);
      onSignal(() => gateway.close());
    },
  );

program
  .command('demo')
  .description('start a demo service and a gateway in front of it, and print curl commands to try')
  .option('--port <n>', 'gateway port (default 8080)', port)
  .option('--upstream-port <n>', 'demo service port (default 4000)', port)
  .option('--host <host>', 'address to listen on (default 127.0.0.1)')
  .option('--store <spec>', 'store spec (default sqlite:.idem/demo.db)')
  .option('--delay <ms>', 'time one payment takes (default 250)', count)
  .action(
    async (opts: { port?: number; upstreamPort?: number; host?: string; store?: string; delay?: number }) => {
      const demo = await startDemo({
        settings: { port: '--port', upstreamPort: '--upstream-port' },
        ...(opts.port !== undefined && { port: opts.port }),
        ...(opts.upstreamPort !== undefined && { upstreamPort: opts.upstreamPort }),
        ...(opts.host !== undefined && { host: opts.host }),
        ...(opts.store !== undefined && { store: opts.store }),
        ...(opts.delay !== undefined && { delayMs: opts.delay }),
      });
      console.log(demo.banner);
      onSignal(async () => {
        await demo.gateway.close();
        await demo.service.close();
      });
    },
  );

program
  .command('check')
  .description(
    'probe an endpoint against the IETF Idempotency-Key behaviour table (exit 1 if a duplicate executed)',
  )
  .argument('<url>', 'the endpoint, e.g. http://127.0.0.1:8080/payments')
  .option('-X, --method <method>', 'POST (default), PUT, PATCH or DELETE')
  .option('-d, --data <json>', 'JSON body of the request (default: a small object with a random nonce)')
  .option('-H, --header <header>', "extra request header 'name: value' (repeatable)", collect, [])
  .option('--key-header <name>', 'the key header (default idempotency-key)')
  .option('--concurrency <n>', 'duplicates sent at once with one fresh key (default 10)', count)
  .option('--timeout <ms>', 'per request (default 30000)', count)
  .option(
    '--id-field <path>',
    'JSON path of the response field that identifies an execution (default: id, *_id)',
  )
  .option('--id-header <name>', 'response header that identifies an execution (e.g. location)')
  .option('--json', 'print the report as JSON (schema idem-check/1, docs/cli.md)')
  .addHelpText(
    'after',
    '\nExit codes: 0 no failure (warnings allowed); 1 a duplicate executed, or the endpoint could not be\nreached or refused the first request; 2 usage; 3 no duplicate executed but a row failed.',
  )
  .action(
    async (
      url: string,
      opts: {
        method?: string;
        data?: string;
        header: string[];
        keyHeader?: string;
        concurrency?: number;
        timeout?: number;
        idField?: string;
        idHeader?: string;
        json?: boolean;
      },
    ) => {
      const headers: Record<string, string> = {};
      for (const h of opts.header) {
        const i = h.indexOf(':');
        if (i <= 0) throw new InvalidArgumentError(`-H needs 'name: value', got ${JSON.stringify(h)}`);
        headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
      }
      const report = await checkEndpoint(url, {
        headers,
        ...(opts.method !== undefined && { method: opts.method }),
        ...(opts.data !== undefined && { data: opts.data }),
        ...(opts.keyHeader !== undefined && { keyHeader: opts.keyHeader }),
        ...(opts.concurrency !== undefined && { concurrency: opts.concurrency }),
        ...(opts.timeout !== undefined && { timeoutMs: opts.timeout }),
        ids: {
          ...(opts.idField !== undefined && { field: opts.idField }),
          ...(opts.idHeader !== undefined && { header: opts.idHeader }),
        },
      });
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatCheck(report));
      process.exitCode = report.exitCode;
    },
  );

const keys = program.command('keys').description('look up, list and delete keys in a store');
keys
  .command('show')
  .description(
    "show one key's record: state, attempt, lease, expiry, outcome size, replays (the key is hashed, never stored)",
  )
  .argument('<key>', 'the idempotency key as the client sent it')
  .option('--store <spec>', 'the store (or IDEM_STORE): sqlite:PATH, postgres://…, redis://…, dynamodb://…')
  .option('--scope <part>', 'a scope part, as passed to idem.run (repeatable, in order)', collect, [])
  .option(
    '-H, --header <header>',
    "a credential header of the HTTP caller, 'name: value' (repeatable)",
    collect,
    [],
  )
  .option('--gateway [namespace]', "the record was written by idem serve (namespace, default 'gateway')")
  .option('--json', 'print JSON')
  .action(
    async (
      key: string,
      opts: { store?: string; scope: string[]; header: string[]; gateway?: string | true; json?: boolean },
    ) => {
      const where = { scope: opts.scope, ...httpScope(opts.header, opts.gateway) };
      checkKeyArgument(key, where);
      const store = await openStore(opts.store);
      try {
        const report = await describeKey(store, key, where);
        console.log(opts.json ? JSON.stringify(report) : formatKey(report));
      } finally {
        await store.close?.();
      }
    },
  );

keys
  .command('list')
  .description(
    'list live records page by page: state, attempt, age, lease, expiry, scope hash, outcome size (never the outcome)',
  )
  .option('--store <spec>', 'the store (or IDEM_STORE)')
  .option('--state <state>', 'only in_progress | completed | released', stateOption)
  .option(
    '--older-than <duration>',
    'only records created at least this long ago (30s, 10m, 1h, 7d)',
    ageOption,
  )
  .option('--newer-than <duration>', 'only records created less than this long ago', ageOption)
  .option(
    '--lease-ended <duration>',
    'only records not completed whose lease ended at least this long ago: stuck holders and released markers',
    ageOption,
  )
  .option('--scope-hash <hash>', "only records with this scope hash (as listed; '' for unscoped ones)")
  .option(
    '--scope <part>',
    'only records of this scope, as passed to idem.run (repeatable, in order)',
    collect,
    [],
  )
  .option(
    '-H, --header <header>',
    "only records of the HTTP caller with this credential header, 'name: value' (repeatable)",
    collect,
    [],
  )
  .option(
    '--gateway [namespace]',
    "with --scope/-H: the records were written by idem serve (default 'gateway')",
  )
  .option('--limit <n>', 'records to print (default 100)', count)
  .option('--cursor <cursor>', 'continue where the previous page stopped')
  .option('--json', 'print JSON: { records, cursor }')
  .action(
    async (opts: {
      store?: string;
      state?: ListedState;
      olderThan?: number;
      newerThan?: number;
      leaseEnded?: number;
      scopeHash?: string;
      scope: string[];
      header: string[];
      gateway?: string | true;
      limit?: number;
      cursor?: string;
      json?: boolean;
    }) => {
      if (opts.leaseEnded !== undefined && opts.state === 'completed')
        throw new InvalidArgumentError(
          '--lease-ended matches records by the end of their lease, which completed records no longer have: drop --state completed',
        );
      const scopeHash = listScopeHash(opts);
      const store = await openStore(opts.store);
      try {
        const tty = process.stderr.isTTY && !opts.json;
        const page = await listRecords(store, {
          state: opts.state,
          olderThanMs: opts.olderThan,
          newerThanMs: opts.newerThan,
          leaseEndedMs: opts.leaseEnded,
          scopeHash,
          cursor: opts.cursor,
          limit: Math.max(1, opts.limit ?? 100),
          onPage: (n) => tty && process.stderr.write(`\rlisted ${n}…`),
        });
        if (tty) process.stderr.write('\r\x1b[K');
        console.log(
          opts.json
            ? JSON.stringify({ records: page.records, cursor: page.cursor ?? null })
            : formatList(page.records, page.cursor, page.now),
        );
      } finally {
        await store.close?.();
      }
    },
  );

keys
  .command('delete')
  .description("delete one key's record whatever its state (asks first unless --yes); the key is new again")
  .argument('<key>', 'the idempotency key as the client sent it')
  .option('--store <spec>', 'the store (or IDEM_STORE)')
  .option('--scope <part>', 'a scope part, as passed to idem.run (repeatable, in order)', collect, [])
  .option(
    '-H, --header <header>',
    "a credential header of the HTTP caller, 'name: value' (repeatable)",
    collect,
    [],
  )
  .option('--gateway [namespace]', "the record was written by idem serve (namespace, default 'gateway')")
  .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
  .option('--json', 'print JSON')
  .action(
    async (
      key: string,
      opts: {
        store?: string;
        scope: string[];
        header: string[];
        gateway?: string | true;
        yes?: boolean;
        json?: boolean;
      },
    ) => {
      const where = { scope: opts.scope, ...httpScope(opts.header, opts.gateway) };
      checkKeyArgument(key, where);
      if (!opts.yes && !process.stdin.isTTY)
        throw new InvalidArgumentError('stdin is not a terminal, so idem cannot ask: add --yes to delete');
      const store = await openStore(opts.store);
      try {
        const inspect = requireInspect(store, 'idem keys delete');
        const before = await describeKey(store, key, where);
        if (before.state !== 'absent' && !opts.yes) {
          const rl = createInterface({ input: process.stdin, output: process.stderr });
          const answer = await rl.question(
            `delete the ${before.state} record of key ${JSON.stringify(key)} (${before.recordId})? [y/N] `,
          );
          rl.close();
          if (!/^y(es)?$/i.test(answer.trim())) {
            console.log(opts.json ? JSON.stringify({ key, deleted: false, aborted: true }) : 'not deleted');
            return;
          }
        }
        const deleted = before.state !== 'absent' && (await inspect.delete(recordIdFor(key, where)));
        // the key is new again: so is its replay count (`keys show` would go on from the old one)
        if (deleted) await store.counters?.forget?.(before.recordId);
        console.log(
          opts.json
            ? JSON.stringify({ key, recordId: before.recordId, deleted, was: before.state })
            : deleted
              ? `deleted the ${before.state} record of key ${JSON.stringify(key)} (${before.recordId}): the key is new again`
              : `nothing to delete: no live record for key ${JSON.stringify(key)} under this scope`,
        );
      } finally {
        await store.close?.();
      }
    },
  );

program
  .command('stats')
  .description(
    'count live records by state and the bytes of stored outcomes (scans the whole store), and the replays, conflicts, takeovers and LLM savings the store keeps',
  )
  .option('--store <spec>', 'the store (or IDEM_STORE)')
  .option(
    '--since <duration>',
    'count replays, conflicts, takeovers and savings over this last span only, e.g. 15m, 1h, 7d (the record counts are always the live ones)',
    sinceOption,
  )
  .option('--json', 'print JSON')
  .action(async (opts: { store?: string; json?: boolean; since?: number }) => {
    const store = await openStore(opts.store);
    try {
      const tty = process.stderr.isTTY && !opts.json;
      const since = opts.since === undefined ? undefined : Date.now() - opts.since;
      const stats = await storeStats(store, (n) => tty && process.stderr.write(`\rscanned ${n} records…`));
      const counters = await readCounters(store, since);
      if (tty) process.stderr.write('\r\x1b[K');
      console.log(
        opts.json
          ? JSON.stringify({
              ...stats,
              longestOverdueLeaseMs: stats.longestOverdueLeaseMs ?? null,
              counters: counters ?? null,
              countersSince: since ?? null,
            })
          : formatStats(stats, counters, since),
      );
    } finally {
      await store.close?.();
    }
  });

program
  .command('purge')
  .description('delete expired records in bounded batches (Redis expires them itself)')
  .option('--store <spec>', 'the store (or IDEM_STORE)')
  .option('--batch <n>', 'records per batch (default 1000)', count)
  .option('--json', 'print JSON')
  .action(async (opts: { store?: string; batch?: number; json?: boolean }) => {
    const store = await openStore(opts.store);
    try {
      const tty = process.stderr.isTTY && !opts.json;
      const deleted = await purgeStore(store, {
        ...(opts.batch !== undefined && { batch: Math.max(1, opts.batch) }),
        onBatch: (n) => tty && process.stderr.write(`\rpurged ${n}…`),
      });
      if (tty) process.stderr.write('\n');
      console.log(
        opts.json
          ? JSON.stringify({ deleted })
          : `purged ${deleted} expired records from ${describeStore(opts.store ?? process.env.IDEM_STORE)}`,
      );
    } finally {
      await store.close?.();
    }
  });

try {
  if (process.argv.length <= 2) {
    throw new InvalidArgumentError(
      'no command: use idem serve, idem demo, idem check, idem keys, idem stats or idem purge (idem --help lists them)',
    );
  }
  await program.parseAsync(process.argv);
} catch (error) {
  const { line, exitCode } = describeFailure(error);
  // a gateway worker's start-up failure is printed once, by the primary
  if (isServeWorker()) await reportFatal(line, exitCode);
  else if (line) console.error(line);
  process.exit(exitCode); // also when a half-opened store or pool would keep the process alive
}

/** Resolves when `port` on `host` can be listened on (0 always can); rejects with the listen error. */
function portFree(port: number, host: string): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, host, () => server.close(() => resolve()));
  });
}

/** Runs `step`; if it fails, closes the gateway (its store and pool) before passing the error on. */
async function closeOnFailure<T>(gateway: Gateway, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    await gateway.close().catch(() => {});
    throw error;
  }
}

function onSignal(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) process.exit(130);
    closing = true;
    console.log(`\n${signal}: closing (again to force)`);
    close().then(
      () => process.exit(0),
      (e) => {
        console.error(describeFailure(e).line);
        process.exit(EXIT_FAILED);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('not a port number');
  return n;
}

function workerCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1024)
    throw new InvalidArgumentError('not a number of workers (1 to 1024)');
  return n;
}

/** `workers` from a config file, checked like --workers. */
function workersOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  try {
    return workerCount(String(value));
  } catch {
    throw new InvalidArgumentError(
      `"workers" in --config must be an integer from 1 to 1024, got ${JSON.stringify(value)}`,
    );
  }
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('not a non-negative integer');
  return n;
}

/** The store named by --store or IDEM_STORE, checked to answer. */
async function openStore(spec: string | undefined) {
  const s = spec ?? process.env.IDEM_STORE;
  if (!s)
    throw new InvalidArgumentError(
      '--store (or IDEM_STORE) is required, e.g. --store sqlite:.idem/gateway.db',
    );
  const store = await storeFromSpec(s);
  await checkStore(store, s);
  return store;
}

/** The HTTP part of a key's scope from -H and --gateway, if either was given. */
/** A malformed key is a usage error (exit 2), checked the way recordIdFor will use it. */
function checkKeyArgument(key: string, where: KeyScope): void {
  try {
    recordIdFor(key, where);
  } catch (error) {
    throw new InvalidArgumentError(`the key: ${(error as Error).message}`);
  }
}

function httpScope(headers: string[], gateway: string | true | undefined) {
  if (headers.length === 0 && gateway === undefined) return {};
  return {
    http: {
      headers: parseHeaders(headers),
      ...(gateway !== undefined && { namespace: gateway === true ? 'gateway' : gateway }),
    },
  };
}

/** `--since 1h`: a span in milliseconds (s, m, h, d), more than 0 and at most the 35 days counts are kept. */
function sinceOption(value: string): number {
  let ms: number;
  try {
    ms = toMs(value, '--since');
  } catch {
    throw new InvalidArgumentError('use a span like 30m, 1h or 7d');
  }
  if (ms <= 0 || ms > 35 * 86_400_000) throw new InvalidArgumentError('use a span from 1s to 35d');
  return ms;
}

/** `--older-than 1h`: a span in milliseconds (s, m, h, d). */
function ageOption(value: string): number {
  try {
    return toMs(value, 'the age');
  } catch {
    throw new InvalidArgumentError('use a span like 30s, 10m, 1h or 7d');
  }
}

/** The scope hash `idem keys list` filters on: given, computed from --scope/-H/--gateway, or none. */
function listScopeHash(opts: {
  scopeHash?: string;
  scope: string[];
  header: string[];
  gateway?: string | true;
}): string | undefined {
  const computed = opts.scope.length > 0 || opts.header.length > 0 || opts.gateway !== undefined;
  if (opts.scopeHash !== undefined && computed)
    throw new InvalidArgumentError('give --scope-hash, or --scope/-H/--gateway to compute it, not both');
  if (opts.scopeHash !== undefined) {
    if (!/^[A-Za-z0-9_-]{0,64}$/.test(opts.scopeHash))
      throw new InvalidArgumentError(
        '--scope-hash is the hash as listed (base64url), or empty for unscoped records',
      );
    return opts.scopeHash;
  }
  if (!computed) return undefined;
  try {
    return scopeHashFor({ scope: opts.scope, ...httpScope(opts.header, opts.gateway) });
  } catch (error) {
    throw new InvalidArgumentError(`the scope: ${(error as Error).message}`);
  }
}

function stateOption(value: string): ListedState {
  if (value === 'in_progress' || value === 'completed' || value === 'released') return value;
  throw new InvalidArgumentError('use in_progress, completed or released');
}

function parseHeaders(lines: string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of lines) {
    const i = h.indexOf(':');
    if (i <= 0) throw new InvalidArgumentError(`-H needs 'name: value', got ${JSON.stringify(h)}`);
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  return headers;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
