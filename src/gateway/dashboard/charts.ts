/**
 * The dashboard's charts, as browser code: what each of the eight charts draws (series computed
 * from two consecutive snapshots), the `<canvas>` drawing (grid, lines, a dot on the latest
 * value and on isolated points), the tiles, and the metrics poll. Each chart's container
 * carries `data-max` (the largest value drawn), which the browser test reads.
 *
 * Written without template literals, `${` or backslashes, so it can live in a template literal.
 *
 * @module
 */

/**
 * Variables `CHARTS`, functions `buildCharts()`, `draw(chart)`, `pollMetrics()`, in the page's scope (uses `samples`, `api`, `rate`, `quantileMs`).
 *
 * @example
 * const script = '(function () {' + READ_METRICS_SCRIPT + CHARTS_SCRIPT + '})()';
 */
export const CHARTS_SCRIPT = `
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
`;
