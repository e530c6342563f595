/**
 * Rendering idem's own answers for the middleware: the problem+json response, with idem's
 * marker headers under the configured names (`replayHeader`, `shouldRetryHeaders`), or the
 * app's own shape through `onError`.
 *
 * @module
 */
import type { ResolvedOptions } from './options.ts';
import { markerHeaders } from './outcome.ts';
import { type ProblemType, problemBody, problemResponse } from './problem.ts';

/** Renders one of idem's answers for `request`. */
export type RenderProblem = (
  request: Request,
  type: ProblemType,
  detail?: string,
  headers?: readonly [string, string][],
) => Promise<Response>;

/**
 * Builds the renderer of one middleware. With `onError`, the app's response is sent, plus
 * idem's headers it did not set itself (`Retry-After`, should-retry, `Link`); a renderer that
 * throws or answers no `Response` is logged and the problem+json is sent instead.
 *
 * @example
 * const problem = createProblemRenderer(cfg);
 * return problem(request, 'invalid-key', 'too long', [['x-should-retry', 'false']]);
 */
export function createProblemRenderer(cfg: ResolvedOptions): RenderProblem {
  return async (request, type, detail, headers = []) => {
    const response = problemResponse(type, {
      base: cfg.problemBase,
      detail,
      headers: markerHeaders(headers, { replayed: cfg.replayMarkers, noRetry: cfg.shouldRetryHeaders }),
    });
    if (!cfg.onError) return response;
    try {
      const custom = await cfg.onError(problemBody(type, detail, cfg.problemBase), request);
      if (!(custom instanceof Response)) throw new TypeError('onError must return a Response');
      const own = new Response(custom.body, custom); // mutable headers, whatever made it
      for (const [name, value] of response.headers) {
        if (name !== 'content-type' && !own.headers.has(name)) own.headers.set(name, value);
      }
      return own;
    } catch (error) {
      try {
        cfg.logger.error('idem: the onError renderer failed; answering problem+json instead', error);
      } catch {
        // a logger that throws must not break the answer
      }
      return response;
    }
  };
}
