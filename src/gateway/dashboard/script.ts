/**
 * The dashboard's browser code, as a string module (so it ships in `src/` and `dist/` alike,
 * with no build step). Plain ES2020 run by the page: it polls `/api/metrics` every 1.5 s with
 * the token from `sessionStorage`, turns the cumulative counters into rates per second, and
 * draws them on `<canvas>` charts; it polls `/api/keys` for the recent-keys table and posts
 * searches to `/api/keys/find`. Every chart's container carries `data-max` (the largest value
 * drawn), and the page keeps `data-samples`, which the browser test reads.
 *
 * Written without template literals, `${` or backslashes, so it can live in a template literal.
 *
 * @module
 */

/**
 * The dashboard's script (inlined in the page).
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

  // --- reading prom-client's getMetricsAsJSON() ---
  function valuesOf(metrics, name) {
    for (var i = 0; i < metrics.length; i++) if (metrics[i].name === name) return metrics[i].values || [];
    return [];
  }
  function sum(metrics, name, keep) {
    var total = 0;
    valuesOf(metrics, name).forEach(function (v) {
      var own = !v.metricName || v.metricName === name;
      if (own && (!keep || keep(v.labels || {}))) total += Number(v.value) || 0;
    });
    return total;
  }
  function count(metrics, name) {
    var total = 0;
    valuesOf(metrics, name).forEach(function (v) {
      if (v.metricName === name + '_count') total += Number(v.value) || 0;
    });
    return total;
  }
  /** Cumulative bucket counts by upper bound, summed over every label set. */
  function buckets(metrics, name) {
    var byLe = {};
    valuesOf(metrics, name).forEach(function (v) {
      if (v.metricName !== name + '_bucket') return;
      var le = String(v.labels.le);
      byLe[le] = (byLe[le] || 0) + (Number(v.value) || 0);
    });
    return byLe;
  }

  function snapshot(metrics) {
    var requests = function (result) {
      return sum(metrics, 'idem_gateway_requests_total', function (l) { return l.result === result; });
    };
    return {
      at: Date.now(),
      executed: requests('executed'),
      replayed: sum(metrics, 'idem_replays_total'),
      conflict: sum(metrics, 'idem_in_progress_conflicts_total'),
      mismatch: sum(metrics, 'idem_fingerprint_mismatches_total'),
      released: sum(metrics, 'idem_releases_total'),
      waits: count(metrics, 'idem_gateway_wait_seconds'),
      takeovers: sum(metrics, 'idem_takeovers_total'),
      leaseLost: sum(metrics, 'idem_lease_lost_total'),
      tokens: sum(metrics, 'idem_llm_tokens_saved_total'),
      usd: sum(metrics, 'idem_llm_cost_saved_usd_total'),
      storeLatency: buckets(metrics, 'idem_store_latency_seconds'),
      waitTime: buckets(metrics, 'idem_gateway_wait_seconds'),
    };
  }

  function rate(prev, cur, field) {
    var dt = (cur.at - prev.at) / 1000;
    return dt > 0 ? Math.max(0, cur[field] - prev[field]) / dt : 0;
  }
  /** The q-quantile (in ms) of what the histogram saw between two samples, or null if nothing. */
  function quantileMs(prev, cur, q) {
    var bounds = Object.keys(cur).filter(function (le) { return le !== '+Inf'; })
      .map(Number).sort(function (a, b) { return a - b; });
    var total = (cur['+Inf'] || 0) - (prev['+Inf'] || 0);
    if (!(total > 0)) return null;
    var target = q * total;
    var lower = 0;
    var below = 0;
    for (var i = 0; i < bounds.length; i++) {
      var le = String(bounds[i]);
      var count = (cur[le] || 0) - (prev[le] || 0);
      if (count >= target) {
        var share = count > below ? (target - below) / (count - below) : 1;
        return (lower + (bounds[i] - lower) * share) * 1000;
      }
      lower = bounds[i];
      below = count;
    }
    return lower * 1000; // past the last bound: report the bound
  }

  // --- charts ---
  var CHARTS = [
    { id: 'outcomes', title: 'Requests by outcome (per second)', series: [
      ['executed', function (p, c) { return rate(p, c, 'executed'); }],
      ['replayed', function (p, c) { return rate(p, c, 'replayed'); }],
      ['conflict', function (p, c) { return rate(p, c, 'conflict'); }],
      ['mismatch', function (p, c) { return rate(p, c, 'mismatch'); }],
      ['released', function (p, c) { return rate(p, c, 'released'); }]] },
    { id: 'blocked', title: 'Duplicates blocked (per second): replays + conflicts + mismatches', series: [
      ['blocked', function (p, c) {
        return rate(p, c, 'replayed') + rate(p, c, 'conflict') + rate(p, c, 'mismatch');
      }]] },
    { id: 'waits', title: 'Duplicates that waited for the live request (per second)', series: [
      ['waits', function (p, c) { return rate(p, c, 'waits'); }]] },
    { id: 'waitTime', title: 'Wait duration (ms)', series: [
      ['p50', function (p, c) { return quantileMs(p.waitTime, c.waitTime, 0.5); }],
      ['p99', function (p, c) { return quantileMs(p.waitTime, c.waitTime, 0.99); }]] },
    { id: 'takeovers', title: 'Lease takeovers and lost leases (per second)', series: [
      ['takeovers', function (p, c) { return rate(p, c, 'takeovers'); }],
      ['lease lost', function (p, c) { return rate(p, c, 'leaseLost'); }]] },
    { id: 'storeLatency', title: 'Store latency, all operations (ms)', series: [
      ['p50', function (p, c) { return quantileMs(p.storeLatency, c.storeLatency, 0.5); }],
      ['p99', function (p, c) { return quantileMs(p.storeLatency, c.storeLatency, 0.99); }]] },
    { id: 'tokens', title: 'LLM tokens saved (total)', series: [
      ['tokens', function (p, c) { return c.tokens; }]] },
    { id: 'usd', title: 'Money saved, USD (total)', series: [
      ['USD', function (p, c) { return c.usd; }]] },
  ];

  function buildCharts() {
    var grid = $('charts');
    CHARTS.forEach(function (chart) {
      var box = document.createElement('section');
      box.className = 'chart';
      box.id = 'chart-' + chart.id;
      box.dataset.max = '0';
      var h = document.createElement('h2');
      h.textContent = chart.title;
      var legend = document.createElement('div');
      legend.className = 'legend';
      chart.series.forEach(function (s, i) {
        var item = document.createElement('span');
        item.style.setProperty('--c', COLORS[i]);
        item.textContent = s[0] + ' ';
        var value = document.createElement('b');
        value.textContent = '–';
        item.appendChild(value);
        legend.appendChild(item);
        s.valueEl = value;
      });
      var canvas = document.createElement('canvas');
      box.appendChild(h);
      box.appendChild(legend);
      box.appendChild(canvas);
      grid.appendChild(box);
      chart.box = box;
      chart.canvas = canvas;
    });
  }

  function fmt(v) {
    if (v === null || v === undefined) return '–';
    if (v === 0) return '0';
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString();
    return Number(v.toPrecision(3)).toString();
  }

  function draw(chart) {
    var canvas = chart.canvas;
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth;
    var height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    var g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    var lines = chart.series.map(function (s) {
      var points = [];
      for (var i = 1; i < samples.length; i++) points.push(s[1](samples[i - 1], samples[i]));
      return points;
    });
    var max = 0;
    lines.forEach(function (points) {
      points.forEach(function (v) { if (v !== null && v > max) max = v; });
    });
    chart.box.dataset.max = String(max);
    var top = max > 0 ? niceCeil(max) : 1;
    var left = 44;
    var plotW = width - left - 8;
    var plotH = height - 18;
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    g.strokeStyle = '#e5e7eb';
    g.lineWidth = 1;
    for (var k = 0; k <= 4; k++) {
      var y = 6 + plotH - (plotH * k) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(left + plotW, y);
      g.stroke();
      g.fillText(fmt((top * k) / 4), 2, y + 4);
    }
    var step = plotW / Math.max(1, KEEP - 2);
    lines.forEach(function (points, i) {
      g.strokeStyle = COLORS[i];
      g.lineWidth = 2;
      g.beginPath();
      var pen = false;
      var x0 = left + plotW - step * (points.length - 1);
      var dots = [];
      points.forEach(function (v, j) {
        if (v === null) { pen = false; return; }
        var x = x0 + step * j;
        var yv = 6 + plotH - (plotH * v) / top;
        if (pen) g.lineTo(x, yv); else g.moveTo(x, yv);
        // a point with no neighbour draws no line: mark it, and the latest value, with a dot
        var alone = (j === 0 || points[j - 1] === null) && (j === points.length - 1 || points[j + 1] === null);
        if (alone || j === points.length - 1) dots.push([x, yv]);
        pen = true;
      });
      g.stroke();
      g.fillStyle = COLORS[i];
      dots.forEach(function (d) {
        g.beginPath();
        g.arc(d[0], d[1], 3, 0, 2 * Math.PI);
        g.fill();
      });
      var last = points.length ? points[points.length - 1] : null;
      chart.series[i].valueEl.textContent = fmt(last);
    });
  }

  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function tiles(cur) {
    $('t-executed').textContent = fmt(cur.executed);
    $('t-blocked').textContent = fmt(cur.replayed + cur.conflict + cur.mismatch);
    $('t-tokens').textContent = fmt(cur.tokens);
    $('t-usd').textContent = '$' + (cur.usd >= 1 ? cur.usd.toFixed(2) : fmt(cur.usd));
  }

  function pollMetrics() {
    return api('/api/metrics').then(function (metrics) {
      samples.push(snapshot(metrics));
      if (samples.length > KEEP) samples.shift();
      document.body.dataset.samples = String(samples.length);
      tiles(samples[samples.length - 1]);
      CHARTS.forEach(draw);
      setStatus('Live: updated ' + new Date().toLocaleTimeString() + ', every ' + POLL_MS / 1000 + ' s');
    });
  }

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
