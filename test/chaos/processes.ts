/**
 * The processes of a chaos run: library workers (test/chaos/worker.ts) and `idem serve`
 * gateways, each restartable, with their pending deliveries failed when they die.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const WORKER = new URL('./worker.ts', import.meta.url).pathname;
const SKEW = new URL('../stores/fixtures/redis-skew-clock.ts', import.meta.url).href;
const IDEM_BIN = new URL('../../bin/idem.js', import.meta.url).pathname;

export interface Answer {
  op: number;
  d: number;
  ok: boolean;
  value?: unknown;
  replayed?: boolean;
  code?: string;
}

/** A delivery whose worker died before answering. */
export class Lost extends Error {}

/** A worker process that can be killed, frozen and replaced. */
export interface Worker {
  readonly id: number;
  /** The OS process id, as the worker writes it in its ledger lines. */
  readonly pid: number;
  send(op: number, d: number, holdMs: number, kind?: 'lib' | 'inbox' | 'workflow'): Promise<Answer>;
  kill(): void;
  stop(): void;
  cont(): void;
  alive(): boolean;
  stopped: boolean;
}

export async function startWorker(
  id: number,
  config: { store: string; ledger: string; leaseMs: number; bypass?: boolean },
  skewMs: number,
  onCrash?: (what: string) => void,
): Promise<Worker> {
  const args = [
    '--conditions=idem-source',
    ...(skewMs ? ['--import', SKEW] : []),
    WORKER,
    JSON.stringify(config),
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, IDEM_CLOCK_SKEW_MS: String(skewMs) },
  });
  let killed = false;
  const pending = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const msg = JSON.parse(line) as Answer & { ready?: boolean };
    if (msg.ready) return ready();
    pending.get(msg.d)?.resolve(msg);
    pending.delete(msg.d);
  });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => (log = (log + c).slice(-4000)));
  child.once('exit', (code, signal) => {
    if (!killed)
      onCrash?.(
        `worker ${id} exited by itself (${signal ?? code}): ${log.trim().split('\n').slice(0, 6).join(' | ')}`,
      );
    for (const p of pending.values()) p.reject(new Lost(`worker ${id} died`));
    pending.clear();
    ready();
  });
  child.stdin!.on('error', () => {}); // writes to a dead worker
  await isReady;
  const w: Worker = {
    id,
    pid: child.pid as number,
    stopped: false,
    send(op, d, holdMs, kind = 'lib') {
      if (!w.alive()) return Promise.reject(new Lost(`worker ${id} is dead`));
      return new Promise((resolve, reject) => {
        pending.set(d, { resolve, reject });
        child.stdin!.write(`${JSON.stringify({ op, d, holdMs, kind })}\n`);
      });
    },
    kill() {
      killed = true;
      child.kill('SIGKILL');
    },
    stop() {
      w.stopped = true;
      child.kill('SIGSTOP');
    },
    cont() {
      w.stopped = false;
      child.kill('SIGCONT');
    },
    alive: () => !killed && child.exitCode === null && child.signalCode === null,
  };
  return w;
}

export interface GatewayProc {
  readonly url: string;
  kill(): void;
  stop(): void;
  cont(): void;
  alive(): boolean;
  stopped: boolean;
  exited: Promise<void>;
}

/** `idem serve` on `port` (restarted on the same port), its clock skewed by `skewMs`. */
export async function startGateway(
  port: number,
  configPath: string,
  skewMs: number,
  onCrash?: (what: string) => void,
): Promise<GatewayProc> {
  const args = [
    '--conditions=idem-source',
    ...(skewMs ? ['--import', SKEW] : []),
    IDEM_BIN,
    'serve',
    '--config',
    configPath,
    '--port',
    String(port),
    // as a compose file would: ride out a store restart at start-up instead of exiting
    '--store-wait',
    '10s',
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, IDEM_CLOCK_SKEW_MS: String(skewMs) },
  });
  let killed = false;
  let log = '';
  child.stderr.on('data', (c: Buffer) => (log = (log + c).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      // the banner, not any line that names the gateway: a worker's log line ("[idem gateway]
      // request failed …") arrived first once while another worker was failing at start-up
      if (line.startsWith('idem gateway ')) resolve();
    });
    void exited.then(() => reject(new Error(`gateway on ${port} exited: ${log}`)));
  });
  child.once('exit', (code, signal) => {
    if (!killed)
      onCrash?.(
        `gateway on ${port} exited by itself (${signal ?? code}): ${log.trim().split('\n').slice(0, 6).join(' | ')}`,
      );
  });
  const g: GatewayProc = {
    url: `http://127.0.0.1:${port}`,
    stopped: false,
    kill() {
      killed = true;
      child.kill('SIGKILL');
    },
    stop() {
      g.stopped = true;
      child.kill('SIGSTOP');
    },
    cont() {
      g.stopped = false;
      child.kill('SIGCONT');
    },
    alive: () => !killed && child.exitCode === null && child.signalCode === null,
    exited,
  };
  return g;
}
