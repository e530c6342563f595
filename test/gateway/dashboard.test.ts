/**
 * The dashboard in real Chromium (Debian's `chromium`, driven by `playwright-core`): a gateway
 * on a SQLite store in front of the demo service, real traffic (new keys, replays, a conflict,
 * a mismatch, a released key, LLM completions and their replays), and the page as an operator
 * uses it: the token form, the token refused, the charts drawing that traffic, a key found by
 * its raw value. Screenshots go to test-output/dashboard/.
 *
 * Skipped with a printed reason when /usr/bin/chromium is missing, except with
 * IDEM_REQUIRE_SERVICES=1, where it must run.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoService, type DemoService } from '../../src/cli/demo-service.ts';
import { createGateway, type Gateway } from '../../src/gateway/index.ts';
import { REQUIRE_SERVICES } from '../helpers/services.ts';
import { post, request, until } from './helpers.ts';

const CHROMIUM = process.env.IDEM_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'dashboard-test-token-5f0c9e2ab71d';
const SHOTS = join(import.meta.dirname, '../../test-output/dashboard');
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  const reason = `${CHROMIUM} is missing (apt-get install chromium)`;
  if (REQUIRE_SERVICES) throw new Error(`${reason}, and IDEM_REQUIRE_SERVICES=1 requires it`);
  console.warn(`[idem tests] skipping the dashboard browser test: ${reason}`);
}

describe.skipIf(!hasChromium)('dashboard in Chromium', () => {
  let demo: DemoService;
  let gateway: Gateway;
  let url: string;
  let admin: string;
  let context: BrowserContext;
  let page: Page;
  const dir = mkdtempSync(join(tmpdir(), 'idem-dash-'));

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    demo = createDemoService({ delayMs: 40, tokenDelayMs: 1 });
    gateway = await createGateway({
      upstream: await demo.listen(0),
      store: `sqlite:${join(dir, 'gateway.db')}`,
      purgeEvery: false,
      adminPort: 0,
      adminToken: TOKEN,
      routes: [
        { path: '/payments', key: 'required', concurrency: 'reject', outcomes: { '503': 'release' } },
        { path: '/v1/chat/completions', key: 'required', concurrency: 'wait', llm: 'openai' },
      ],
    });
    url = await gateway.listen(0);
    admin = gateway.adminUrl as string;
    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  });
  afterAll(async () => {
    await context?.close();
    await gateway?.close();
    await demo?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows only the token form without the token, and refuses a wrong one', async () => {
    const response = await page.goto(`${admin}/`);
    expect(response?.status()).toBe(401);
    await expect(page.locator('#token-form').isVisible()).resolves.toBe(true);
    expect(await page.locator('#charts').count()).toBe(0);
    // every data request from the page is refused without the token, or with a wrong one
    const statuses = await page.evaluate(async (wrong) => {
      const out: number[] = [];
      for (const path of ['/api/metrics', '/api/keys', '/metrics', '/savings']) {
        out.push((await fetch(path)).status);
        out.push((await fetch(path, { headers: { authorization: `Bearer ${wrong}` } })).status);
      }
      return out;
    }, `${TOKEN}-wrong`);
    expect(statuses).toEqual(Array(8).fill(401));
    await page.fill('#token', 'not-the-admin-token');
    await page.click('button[type=submit]');
    await page.locator('#message').getByText('That token was refused.').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('idem-admin-token'))).toBeNull();
    await page.screenshot({ path: join(SHOTS, '1-token-form.png') });
  });

  it('draws the charts from real traffic and finds a key by its raw value', async () => {
    await page.fill('#token', TOKEN);
    await page.click('button[type=submit]');
    await page.locator('#chart-outcomes canvas').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('idem-admin-token'))).toBe(TOKEN);

    // traffic while the page polls, so the rates have samples on both sides
    let stop = false;
    let failure: unknown;
    let round = 0;
    const traffic = (async () => {
      while (!stop) {
        await oneRound(url, round++);
        await new Promise((r) => setTimeout(r, 100));
      }
    })().catch((error: unknown) => {
      failure = error;
    });
    try {
      for (const chart of ['outcomes', 'blocked', 'waits', 'waitTime', 'storeLatency', 'tokens', 'usd']) {
        const drawn = await until(
          async () => Number(await page.locator(`#chart-${chart}`).getAttribute('data-max')) > 0,
          20_000,
        );
        expect(drawn, `chart ${chart} drew data`).toBe(true);
      }
      // a few more samples under traffic, so the charts hold lines rather than single points
      const first = Number(await page.locator('body').getAttribute('data-samples'));
      const more = await until(
        async () => Number(await page.locator('body').getAttribute('data-samples')) >= first + 3,
        10_000,
      );
      expect(more).toBe(true);
    } finally {
      stop = true;
      await traffic;
    }
    if (failure) throw failure;
    // the lines are on the canvases: coloured pixels (the grid and labels are grey)
    const painted = await page.locator('#charts canvas').evaluateAll(colouredPixels);
    // each of the 8 charts has its lines (or, before a second sample, its dots) on the canvas
    expect(painted).toHaveLength(8);
    for (const n of painted) expect(n).toBeGreaterThan(20);
    expect(Number(await page.locator('#t-executed').textContent())).toBeGreaterThan(0);
    expect(await page.locator('#t-usd').textContent()).toMatch(/^\$0\.\d*[1-9]/);
    await page.locator('#recent tr[data-record-id]').first().waitFor();
    await page.screenshot({ path: join(SHOTS, '2-dashboard.png'), fullPage: true });

    // search by the raw key: one record, its lifecycle, and nothing of the raw key on the page
    await page.fill('#key', 'dash-pay-0');
    await page.click('#search button[type=submit]');
    const row = page.locator('#found tr[data-record-id]');
    await row.first().waitFor();
    expect(await row.count()).toBe(1);
    const text = (await row.first().textContent()) ?? '';
    expect(text).toContain('/payments');
    expect(text).toMatch(/acquired.*completed.*executed 201.*replayed/);
    const [expected] = await gateway.admin.findKey('dash-pay-0');
    expect(await row.first().getAttribute('data-record-id')).toBe(expected!.recordId);
    await page.fill('#key', 'never-sent-key');
    await page.click('#search button[type=submit]');
    await page.locator('#found-count').getByText('0 record(s)').waitFor();
    await page.fill('#key', 'dash-pay-0');
    await page.click('#search button[type=submit]');
    await page.locator('#found-count').getByText('1 record(s)').waitFor();
    await page.screenshot({ path: join(SHOTS, '3-search.png'), fullPage: true });
    expect(existsSync(join(SHOTS, '3-search.png'))).toBe(true);
  });

  it('keeps the token for the tab: a reload opens the dashboard again', async () => {
    const response = await page.reload();
    expect(response?.status()).toBe(401); // the navigation itself never carries the token
    await page.locator('#chart-outcomes canvas').waitFor();
    await page.click('#sign-out');
    await page.locator('#token-form').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('idem-admin-token'))).toBeNull();
  });
});

/** The little of a canvas the browser-side code uses (the project's TypeScript has no DOM types). */
interface CanvasLike {
  width: number;
  height: number;
  getContext(kind: '2d'): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

/** Runs in the page: the coloured pixels of each chart (its grid and labels are grey). */
function colouredPixels(canvases: CanvasLike[]): number[] {
  return canvases.map((canvas) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b, a] = [data[i] ?? 0, data[i + 1] ?? 0, data[i + 2] ?? 0, data[i + 3] ?? 0];
      if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) n++;
    }
    return n;
  });
}

/** One round of traffic: a new key and its replay, a conflict, a mismatch, a release, LLM calls. */
async function oneRound(url: string, i: number): Promise<void> {
  const key = `dash-pay-${i}`;
  const first = post(url, '/payments?delay=150', { amount: i }, key);
  await new Promise((r) => setTimeout(r, 30));
  const conflict = await post(url, '/payments?delay=150', { amount: i }, key); // 409 while in progress
  expect(conflict.status).toBe(409);
  expect((await first).status).toBe(201);
  const replay = await post(url, '/payments?delay=150', { amount: i }, key);
  expect(replay.headers['idempotent-replayed']).toBe('true');
  expect((await post(url, '/payments?delay=150', { amount: i + 1 }, key)).status).toBe(422);
  expect((await post(url, '/payments?status=503', { amount: i }, `dash-down-${i}`)).status).toBe(503);
  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] };
  const llmKey = `dash-chat-${i}`;
  const calls = await Promise.all([0, 1, 2].map(() => post(url, '/v1/chat/completions', chat, llmKey)));
  expect(calls.map((c) => c.status)).toEqual([200, 200, 200]);
  const health = await request(url, { method: 'GET', path: '/healthz' });
  expect(health.status).toBe(200);
}
