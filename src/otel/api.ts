/**
 * `@opentelemetry/api`, loaded once if installed (it is an optional peer dependency): without
 * it every instrument here is a no-op, and `idem/otel` still loads.
 *
 * @module
 */
type Api = typeof import('@opentelemetry/api');

/** The API module, or null when `@opentelemetry/api` is not installed. */
export const otelApi: Api | null = await import('@opentelemetry/api').catch(() => null);
