/**
 * Service probes for integration suites. A suite whose service is down is skipped with a
 * printed reason, unless IDEM_REQUIRE_SERVICES=1 (set by .ci/run), where it must run: then
 * an unreachable service fails the suite instead.
 */
import net from 'node:net';

export const REQUIRE_SERVICES = process.env.IDEM_REQUIRE_SERVICES === '1';

export const SERVICES = {
  postgres: process.env.IDEM_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.IDEM_REDIS_URL ?? 'redis://127.0.0.1:6379',
  amqp: process.env.IDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  nats: process.env.IDEM_NATS_URL ?? 'nats://127.0.0.1:4222',
} as const;

/** Resolves true when a TCP connection to host:port opens within 1 s. */
export function reachable(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

/**
 * Whether a suite that needs `service` may run. Prints why it skips; throws when the service
 * is required (IDEM_REQUIRE_SERVICES=1) but unreachable.
 *
 * @example
 * const pgUp = await serviceAvailable('postgres');
 * describe.skipIf(!pgUp)('postgres store', () => { ... });
 */
export async function serviceAvailable(service: keyof typeof SERVICES): Promise<boolean> {
  if (await reachable(SERVICES[service])) return true;
  const reason = `${service} is not reachable at ${SERVICES[service]}`;
  if (REQUIRE_SERVICES) throw new Error(`${reason}, and IDEM_REQUIRE_SERVICES=1 requires it`);
  console.warn(
    `[idem tests] skipping ${service} suites: ${reason} (set IDEM_REQUIRE_SERVICES=1 to fail instead)`,
  );
  return false;
}

/** A name unique to this test run, for schemas and key prefixes: `idem_t_<pid>_<random>`. */
export function uniqueName(prefix = 'idem_t'): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
}
