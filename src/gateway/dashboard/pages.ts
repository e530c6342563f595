/**
 * The admin listener's two pages, as strings: the token form (the body of the 401 a browser
 * gets for `/`; it holds no data) and the dashboard (served only with the token). No build
 * step and no external resources: the CSS and scripts are inline.
 *
 * @module
 */
import { DASHBOARD_SCRIPT } from './script.ts';

const STYLE = `
:root { color-scheme: light; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827; }
body { margin: 0; background: #f3f4f6; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #111827; color: #f9fafb; }
header h1 { font-size: 16px; margin: 0; font-weight: 600; }
header button { margin-left: auto; }
.status { font-size: 12px; color: #9ca3af; }
.status.bad { color: #fca5a5; }
main { padding: 16px 20px; max-width: 1400px; margin: 0 auto; }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin-bottom: 12px; }
.tile, .chart, .panel { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 12px; }
.tile b { display: block; font-size: 22px; }
.tile span { color: #6b7280; font-size: 12px; }
#charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 12px; }
.chart h2, .panel h2 { font-size: 13px; margin: 0 0 4px; font-weight: 600; }
.chart canvas { width: 100%; height: 150px; display: block; }
.legend { display: flex; flex-wrap: wrap; gap: 10px; font-size: 12px; color: #374151; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 3px; margin-right: 4px;
  vertical-align: middle; background: var(--c); }
.panel { margin-top: 12px; overflow-x: auto; }
form { display: flex; gap: 8px; margin: 6px 0 10px; }
input[type=password], input[type=search] { flex: 1; padding: 6px 8px; border: 1px solid #d1d5db; border-radius: 6px;
  font: inherit; }
button { padding: 6px 12px; border: 1px solid #d1d5db; border-radius: 6px; background: #fff; font: inherit;
  cursor: pointer; }
table { width: 100%; border-collapse: collapse; font-size: 12px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #f3f4f6; vertical-align: top; }
th { color: #6b7280; font-weight: 500; }
td:nth-child(2) { font-family: ui-monospace, monospace; }
.state.completed { color: #15803d; } .state.in_progress { color: #b45309; } .state.released { color: #6d28d9; }
.chip { display: inline-block; margin: 0 3px 3px 0; padding: 0 6px; border-radius: 9px; background: #eef2ff; }
.empty { color: #6b7280; }
.login { max-width: 420px; margin: 12vh auto; }
.login p { color: #4b5563; }
`;

const HEAD = (title: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
  `<meta name="viewport" content="width=device-width, initial-scale=1">` +
  `<meta name="referrer" content="no-referrer"><title>${title}</title><style>${STYLE}</style></head>`;

const TOKEN_SCRIPT = `
'use strict';
(function () {
  var TOKEN_KEY = 'idem-admin-token';
  var message = document.getElementById('message');
  function open(token) {
    fetch('/', { headers: { authorization: 'Bearer ' + token, accept: 'text/html' }, cache: 'no-store' })
      .then(function (r) {
        if (r.status !== 200) {
          sessionStorage.removeItem(TOKEN_KEY);
          message.textContent = r.status === 401 ? 'That token was refused.' : 'The gateway answered HTTP ' + r.status + '.';
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, token);
        return r.text().then(function (html) {
          document.open();
          document.write(html);
          document.close();
        });
      })
      .catch(function (e) { message.textContent = 'The gateway cannot be reached: ' + e.message; });
  }
  var saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) open(saved);
  document.getElementById('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var token = document.getElementById('token').value.trim();
    if (token) open(token);
  });
})();
`;

/**
 * The token form: the body of the 401 a browser gets for `/` without the token.
 *
 * @example
 * res.writeHead(401, { 'content-type': 'text/html' }).end(tokenPage());
 */
export function tokenPage(): string {
  return (
    `${HEAD('idem gateway: admin token')}<body><main class="login"><div class="panel">` +
    `<h2>idem gateway dashboard</h2>` +
    `<p>Enter the admin token (<code>--admin-token</code> or <code>IDEM_ADMIN_TOKEN</code>). ` +
    `It stays in this tab's session storage and is sent as <code>Authorization: Bearer</code>.</p>` +
    `<form id="token-form"><input id="token" type="password" autocomplete="off" placeholder="admin token" autofocus>` +
    `<button type="submit">Open</button></form><p id="message" role="alert"></p></div></main>` +
    `<script>${TOKEN_SCRIPT}</script></body></html>`
  );
}

/**
 * The dashboard (served only with the token): tiles, live charts, recent keys and key search.
 *
 * @example
 * res.writeHead(200, { 'content-type': 'text/html' }).end(dashboardPage());
 */
export function dashboardPage(): string {
  const tile = (id: string, label: string) =>
    `<div class="tile"><b id="${id}">–</b><span>${label}</span></div>`;
  const table = (id: string) =>
    `<table><thead><tr><th>last seen</th><th>record id</th><th>route</th><th>method</th><th>state</th>` +
    `<th>replays</th><th>lifecycle (oldest first)</th></tr></thead><tbody id="${id}"></tbody></table>`;
  return (
    `${HEAD('idem gateway dashboard')}<body data-samples="0"><header><h1>idem gateway</h1>` +
    `<span id="status" class="status">connecting…</span><button id="sign-out" type="button">Forget token</button>` +
    `</header><main><div class="tiles">` +
    tile('t-executed', 'requests executed (forwarded once)') +
    tile('t-blocked', 'duplicates blocked') +
    tile('t-tokens', 'LLM tokens saved') +
    tile('t-usd', 'money saved') +
    `</div><div id="charts"></div>` +
    `<section class="panel"><h2>Find a key</h2><form id="search">` +
    `<input id="key" type="search" autocomplete="off" placeholder="the raw Idempotency-Key (hashed on the server, never stored)">` +
    `<button type="submit">Search</button></form>` +
    `<div id="found-box" hidden><p id="found-count"></p>${table('found')}</div></section>` +
    `<section class="panel"><h2>Recent keys</h2>${table('recent')}</section></main>` +
    `<script>${DASHBOARD_SCRIPT}</script></body></html>`
  );
}
