/**
 * `@opentelemetry/api`, loaded once if installed (it is an optional peer dependency): without
 * it every instrument here is a no-op, and `idem/otel` still loads. Loaded synchronously (no
 * top-level await), so `require('idem/otel')` works too; the API keeps its global providers on
 * `globalThis`, so they are shared with the app's own copy whichever format it loaded.
 *
 * @module
 */
import { createRequire } from 'node:module';

type Api = typeof import('@opentelemetry/api');

function load(): Api | null {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as Api;
  } catch {
    return null;
  }
}

/** The API module, or null when `@opentelemetry/api` is not installed. */
export const otelApi: Api | null = load();
