/**
 * The gateway's LLM preset as configured: the preset name and route `llm` validated with clear
 * errors, the preset's upstream default and its overrides, routes and defaults of the config
 * applied over it, the savings endpoint, and `idem serve --preset` from the command line.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/core/errors.ts';
import { applyPreset, createGateway } from '../../src/gateway/index.ts';
import { requestFacts, responseFacts } from '../../src/gateway/llm.ts';
import { compileRoutes, matchRoute } from '../../src/gateway/routes.ts';
import { startUpstream } from './helpers.ts';

const BIN = join(import.meta.dirname, '../../bin/idem.js');
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe('preset config', () => {
  it('an unknown preset or route llm is refused, naming the nearest one', async () => {
    await expect(createGateway({ preset: 'opneai' as never, store: 'memory' })).rejects.toThrow(
      /preset must be 'openai' or 'anthropic', got "opneai" — did you mean openai\?/,
    );
    expect(() => compileRoutes([{ path: '/x', llm: 'claude' as never }])).toThrow(/routes\[0\]\.llm must be/);
    await expect(
      createGateway({ preset: 'openai', prices: { m: { input: -1, output: 1 } } }),
    ).rejects.toThrow(InvalidOptionError);
    await expect(createGateway({ preset: 'openai', presets: 'x' } as never)).rejects.toThrow(
      /did you mean preset/,
    );
  });

  it('defaults the upstream to the provider; config routes match first, config defaults override the policy', () => {
    expect(applyPreset({ preset: 'openai' }).upstream).toBe('https://api.openai.com');
    expect(applyPreset({ preset: 'anthropic' }).upstream).toBe('https://api.anthropic.com');
    const config = applyPreset({
      preset: 'openai',
      upstream: 'http://127.0.0.1:1',
      defaults: { key: 'optional' },
      routes: [{ path: '/v1/batches', key: 'required' }],
    });
    expect(config.upstream).toBe('http://127.0.0.1:1');
    const routes = compileRoutes(config.routes, config.defaults);
    expect(matchRoute(routes, 'POST', '/v1/batches')).toMatchObject({ key: 'required', llm: undefined });
    expect(matchRoute(routes, 'POST', '/v1/chat/completions')).toMatchObject({
      key: 'optional',
      scope: 'required',
      concurrency: 'attach',
      llm: 'openai',
      waitMs: 600_000,
    });
    expect(matchRoute(routes, 'POST', '/v1/images/edits')?.llm).toBe('openai');
    expect(matchRoute(routes, 'POST', '/v1/responses/resp_1/cancel')).toBeUndefined();
    expect(matchRoute(routes, 'GET', '/v1/models')).toBeUndefined();
    const chat = matchRoute(routes, 'POST', '/v1/chat/completions')!;
    for (const s of [408, 409, 429, 500, 502, 503, 504, 529]) expect(chat.outcome(s)).toBe('release');
    for (const s of [200, 400, 404, 413, 422]) expect(chat.outcome(s)).toBe('store');
    expect(chat.outcome(401)).toBe('release'); // rejected before execution, as on every route
    const anthropic = compileRoutes(applyPreset({ preset: 'anthropic' }).routes);
    expect(matchRoute(anthropic, 'POST', '/v1/messages')?.llm).toBe('anthropic');
    expect(matchRoute(anthropic, 'POST', '/v1/messages/count_tokens')).toBeUndefined();
  });

  it('reads the model and the turn of a request; completeness and usage of a response', () => {
    const body = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(requestFacts(body({ model: 'gpt-4o', messages: [{}, {}, {}] }))).toEqual({
      model: 'gpt-4o',
      turn: '3',
    });
    expect(requestFacts(body({ model: 'm', input: 'hi' }))).toEqual({ model: 'm', turn: undefined });
    expect(requestFacts(body({ input: [{}], previous_response_id: 'r1' })).turn).toBe('1@r1');
    expect(requestFacts(new TextEncoder().encode('not json'))).toEqual({ model: undefined, turn: undefined });
    const cut =
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\n\n';
    expect(responseFacts('anthropic', 'text/event-stream', cut)).toEqual({
      usage: { input_tokens: 3 },
      complete: false,
      unbilled: false,
    });
    expect(responseFacts('anthropic', 'text/event-stream', `${cut}event: error\ndata: {}\n\n`).unbilled).toBe(
      true,
    );
    // a Responses stream that failed before any output text: not billed (released)
    const failed = 'event: response.created\ndata: {}\n\nevent: error\ndata: {"type":"error"}\n\n';
    expect(responseFacts('openai', 'text/event-stream', failed)).toMatchObject({
      complete: false,
      unbilled: true,
    });
    const begun = 'event: response.output_text.delta\ndata: {}\n\nevent: error\ndata: {}\n\n';
    expect(responseFacts('openai', 'text/event-stream', begun)).toMatchObject({
      complete: false,
      unbilled: false,
    });
    expect(responseFacts('openai', 'application/json', '{"usage":{"prompt_tokens":1}}')).toEqual({
      usage: { prompt_tokens: 1 },
      complete: true,
      unbilled: false,
    });
  });

  it('GET /savings answers JSON with a preset; it is off without one, and can be moved', async () => {
    const upstream = await startUpstream((_, res) => res.end('ok'));
    closers.push(upstream.close);
    const withPreset = await createGateway({
      preset: 'openai',
      upstream: upstream.url,
      store: 'memory',
      purgeEvery: false,
    });
    closers.push(() => withPreset.close());
    const url = await withPreset.listen(0);
    expect(await (await fetch(`${url}/savings`)).json()).toMatchObject({ duplicatesSuppressed: 0, keys: [] });
    const plain = await createGateway({ upstream: upstream.url, store: 'memory', purgeEvery: false });
    closers.push(() => plain.close());
    expect(await (await fetch(`${await plain.listen(0)}/savings`)).text()).toBe('ok'); // proxied
    const moved = await createGateway({
      preset: 'anthropic',
      upstream: upstream.url,
      store: 'memory',
      purgeEvery: false,
      endpoints: { savings: '/_idem/savings' },
    });
    closers.push(() => moved.close());
    expect((await fetch(`${await moved.listen(0)}/_idem/savings`)).headers.get('content-type')).toBe(
      'application/json',
    );
  });
});

describe('idem serve --preset', () => {
  const run = (args: string[]) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    return {
      child,
      out: () => out,
      err: () => err,
      exit: new Promise<number | null>((r) => child.once('exit', r)),
    };
  };

  it('starts with the preset (the upstream from --upstream) and refuses an unknown preset', async () => {
    const bad = run(['serve', '--preset', 'gemini', '--store', 'memory']);
    expect(await bad.exit).toBe(2);
    expect(bad.err()).toMatch(/^idem: preset must be 'openai' or 'anthropic', got "gemini"/);
    const ok = run([
      'serve',
      '--preset',
      'anthropic',
      '--upstream',
      'http://127.0.0.1:9',
      '--store',
      'memory',
      '--port',
      '0',
    ]);
    try {
      while (!/idem gateway/.test(ok.out()) && ok.child.exitCode === null)
        await new Promise((r) => setTimeout(r, 50));
      expect(ok.out()).toMatch(
        /idem gateway http:\/\/127\.0\.0\.1:\d+ → http:\/\/127\.0\.0\.1:9 \(store memory, preset anthropic\)/,
      );
    } finally {
      ok.child.kill('SIGTERM');
      await ok.exit;
    }
  });
});
