/**
 * Who may read the gateway's operational endpoints (`/metrics`, `/savings`): with an admin
 * token, requests carrying `Authorization: Bearer <token>`; without one, only clients on this
 * machine. Everyone else gets 401 `admin-token-required`, so nothing about traffic, keys or
 * savings leaks from a gateway listening on a public interface.
 *
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidOptionError } from '../core/errors.ts';
import { writeProblem } from './respond.ts';

/**
 * The admin check for one gateway: answers true when the request may proceed, otherwise
 * writes the 401 and answers false.
 *
 * @example
 * const admitted = adminGuard(config.adminToken ?? process.env.IDEM_ADMIN_TOKEN);
 * if (url === '/metrics' && admitted(req, res)) sendMetrics(metrics, res);
 */
export function adminGuard(token: string | undefined) {
  const carriesToken = token === undefined ? undefined : bearerCheck(token);
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if (carriesToken === undefined ? isLoopback(req.socket.remoteAddress) : carriesToken(req)) return true;
    const detail = carriesToken
      ? 'send Authorization: Bearer <admin token>'
      : 'this endpoint answers only this machine; set adminToken (or IDEM_ADMIN_TOKEN) to read it from elsewhere';
    writeProblem(res, 'admin-token-required', detail, [['www-authenticate', 'Bearer realm="idem-admin"']]);
    return false;
  };
}

/**
 * Checks an admin token (at least 16 characters, no whitespace) and answers the test of a
 * request: true when it carries `Authorization: Bearer <token>` (compared in constant time).
 *
 * @example
 * const carriesToken = bearerCheck(process.env.IDEM_ADMIN_TOKEN ?? '');
 * if (!carriesToken(req)) return refuse(res);
 */
export function bearerCheck(token: string): (req: IncomingMessage) => boolean {
  if (typeof token !== 'string' || token.length < 16 || /\s/.test(token)) {
    throw new InvalidOptionError(
      'adminToken must be at least 16 characters without whitespace, e.g. from `openssl rand -hex 24`',
    );
  }
  const expected = digest(token);
  return (req) => bearerMatches(req, expected);
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function bearerMatches(req: IncomingMessage, expected: Buffer): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
  return m !== null && timingSafeEqual(digest(m[1] as string), expected);
}

function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}
