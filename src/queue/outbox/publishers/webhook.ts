/**
 * HTTP webhook publisher: one POST per event with `Idempotency-Key: <event id>`, so a receiver
 * that honours the header (idem's middleware, Stripe-style APIs) acts once on a repost.
 *
 * | answer | the event is |
 * |---|---|
 * | 2xx | published |
 * | 408, 425, 429, 5xx, network error, timeout | retried with backoff |
 * | any other 4xx (and an unfollowed 3xx) | parked with the status and body's start |
 *
 * @module
 */
import { toMs } from '../../../core/duration.ts';
import { InvalidOptionError } from '../../../core/errors.ts';
import { checkOptions } from '../event.ts';
import type { OutboxEvent, Publisher, PublishResult } from '../types.ts';

/** Options of {@link webhookPublisher}. */
export interface WebhookPublisherOptions {
  /** The URL to POST to, or one per event. */
  url: string | ((event: OutboxEvent) => string);
  /** Headers added to every request (authorization…); the event's own headers are sent too. */
  headers?: Record<string, string>;
  /** Per request. Default `'10s'`. */
  timeout?: number | string;
  /** Requests in flight at once. Default 16. */
  concurrency?: number;
  /** The fetch to use. Default: the global fetch. */
  fetch?: typeof fetch;
}

const RETRY = new Set([408, 425, 429]);

/**
 * POSTs each event's payload as JSON.
 *
 * @example
 * const publisher = webhookPublisher({ url: 'https://partner.example/hooks/claims', headers: { authorization: 'Bearer …' } });
 */
export function webhookPublisher(options: WebhookPublisherOptions): Publisher {
  checkOptions(options, ['url', 'headers', 'timeout', 'concurrency', 'fetch'], 'webhookPublisher');
  const { url, headers = {}, concurrency = 16 } = options;
  if (typeof url !== 'string' && typeof url !== 'function') {
    throw new InvalidOptionError('webhookPublisher: url must be a string or (event) => string');
  }
  if (typeof url === 'string') new URL(url); // throws on a malformed URL, at configuration time
  if (!(Number.isSafeInteger(concurrency) && concurrency > 0)) {
    throw new InvalidOptionError('webhookPublisher: concurrency must be a positive integer');
  }
  const timeoutMs = toMs(options.timeout ?? '10s', 'webhookPublisher: timeout');
  const doFetch = options.fetch ?? fetch;

  async function post(e: OutboxEvent, signal: AbortSignal): Promise<PublishResult> {
    try {
      const res = await doFetch(typeof url === 'string' ? url : url(e), {
        method: 'POST',
        headers: {
          ...e.headers,
          ...headers,
          'content-type': 'application/json',
          'idempotency-key': e.id,
          'idem-event-topic': e.topic,
        },
        body: JSON.stringify(e.payload),
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
      if (res.status >= 200 && res.status < 300) {
        await res.body?.cancel();
        return { ok: true };
      }
      const text = (await res.text().catch(() => '')).slice(0, 200);
      const error = `HTTP ${res.status}${text ? `: ${text}` : ''}`;
      const retry = res.status >= 500 || RETRY.has(res.status);
      return { ok: false, error, park: !retry };
    } catch (err) {
      return { ok: false, error: (err as Error)?.message ?? String(err) };
    }
  }

  return {
    name: 'webhook',
    async publish(events, signal) {
      const results: PublishResult[] = new Array(events.length);
      let next = 0;
      const worker = async () => {
        while (next < events.length) {
          const i = next++;
          results[i] = await post(events[i]!, signal);
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, events.length) }, worker));
      return results;
    },
  };
}
