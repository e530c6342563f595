/**
 * The dashboard's browser code, as a string module (so it ships in `src/` and `dist/` alike,
 * with no build step). Plain ES2020 run by the page: it polls `/api/metrics` every 1.5 s with
 * the token from `sessionStorage`, turns the cumulative counters into rates per second, and
 * draws them on `<canvas>` charts; it polls `/api/keys` for the recent-keys table and posts
 * searches to `/api/keys/find`. Every chart's container carries `data-max` (the largest value
 * drawn), and the page keeps `data-samples`, which the browser test reads.
 *
 * Written without template literals, `${` or backslashes (other than the two parts it
 * includes), so it can live in a template literal.
 *
 * @module
 */

import { CHARTS_SCRIPT } from './charts.ts';
import { READ_METRICS_SCRIPT } from './read-metrics.ts';

/**
 * The dashboard's script (inlined in the page): the token, the API calls, the recent-keys table
 * and the search, around the metric reading (read-metrics.ts) and the charts (charts.ts).
 *
 * @example
 * const html = '<script>' + DASHBOARD_SCRIPT + '</script>';
 */
export const DASHBOARD_SCRIPT = `
'use strict';
(function () {
  var TOKEN_KEY = 'idem-admin-token';
  var token = sessionStorage.getItem(TOKEN_KEY) || '';
  var POLL_MS = 1500;
  var KEEP = 120;
  var COLORS = ['#2563eb', '#16a34a', '#d97706', '#dc2626', '#7c3aed', '#0891b2'];
  var samples = [];

  function api(path, init) {
    init = init || {};
    var headers = Object.assign({ authorization: 'Bearer ' + token }, init.headers || {});
    return fetch(path, Object.assign({}, init, { headers: headers, cache: 'no-store' })).then(function (r) {
      if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        setStatus('The admin token was refused: reload the page to enter it again.', true);
        throw new Error('401');
      }
      if (!r.ok) throw new Error('HTTP ' + r.status + ' on ' + path);
      return r.json();
    });
  }

  function $(id) { return document.getElementById(id); }
  function setStatus(text, bad) {
    var el = $('status');
    el.textContent = text;
    el.className = bad ? 'status bad' : 'status';
  }

  ${READ_METRICS_SCRIPT}
  ${CHARTS_SCRIPT}
  // --- keys ---
  function time(at) { return at ? new Date(at).toLocaleTimeString() : '–'; }
  function renderKeys(tbody, keys, empty) {
    tbody.textContent = '';
    if (!keys.length) {
      var row = tbody.insertRow();
      var cell = row.insertCell();
      cell.colSpan = 7;
      cell.className = 'empty';
      cell.textContent = empty;
      return;
    }
    keys.forEach(function (k) {
      var row = tbody.insertRow();
      row.dataset.recordId = k.recordId;
      [time(k.lastSeenAt), k.recordId.slice(0, 16) + '…', k.route || '–', k.method || '–', k.state,
        String(k.replays)].forEach(function (text, i) {
        var cell = row.insertCell();
        cell.textContent = text;
        if (i === 1) cell.title = k.recordId + ' (pid ' + k.pid + ')';
        if (i === 4) cell.className = 'state ' + k.state;
      });
      var events = row.insertCell();
      events.className = 'events';
      k.events.forEach(function (e) {
        var chip = document.createElement('span');
        chip.className = 'chip';
        chip.textContent = e.type + (e.status ? ' ' + e.status : '');
        chip.title = time(e.at) + (e.detail ? ': ' + e.detail : '');
        events.appendChild(chip);
      });
    });
  }
  function pollKeys() {
    return api('/api/keys?limit=50').then(function (body) {
      renderKeys($('recent'), body.keys, 'No keyed requests yet.');
    });
  }
  function search(event) {
    event.preventDefault();
    var raw = $('key').value;
    if (!raw) return;
    api('/api/keys/find', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: raw }),
    }).then(function (body) {
      $('found-box').hidden = false;
      $('found-count').textContent = body.keys.length + ' record(s)';
      renderKeys($('found'), body.keys, 'This process has not seen that key, and no unscoped record holds it.');
    }).catch(function (e) { setStatus('Search failed: ' + e.message, true); });
  }

  function loop(fn, ms) {
    var run = function () {
      fn().catch(function (e) { if (e.message !== '401') setStatus(e.message, true); })
        .then(function () { if (sessionStorage.getItem(TOKEN_KEY)) setTimeout(run, ms); });
    };
    run();
  }

  buildCharts();
  $('search').addEventListener('submit', search);
  $('sign-out').addEventListener('click', function () {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  window.addEventListener('resize', function () { CHARTS.forEach(draw); });
  loop(pollMetrics, POLL_MS);
  loop(pollKeys, 3000);
})();
`;
