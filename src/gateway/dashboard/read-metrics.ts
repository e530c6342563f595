/**
 * The dashboard's browser code that reads prom-client's `getMetricsAsJSON()`: counter sums,
 * histogram buckets, a snapshot of the counters the charts use, rates per second between two
 * snapshots, and quantiles of what a histogram saw between two snapshots (linear within a
 * bucket, as Prometheus' `histogram_quantile` does).
 *
 * Written without template literals, `${` or backslashes, so it can live in a template literal.
 *
 * @module
 */

/**
 * Functions `snapshot(metrics)`, `rate(prev, cur, field)`, `quantileMs(prevBuckets, curBuckets, q)`, in the page's scope.
 *
 * @example
 * const script = '(function () {' + READ_METRICS_SCRIPT + CHARTS_SCRIPT + '})()';
 */
export const READ_METRICS_SCRIPT = `
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
      waits: count(metrics, 'idem_gateway_wait_duration_seconds'),
      takeovers: sum(metrics, 'idem_takeovers_total'),
      leaseLost: sum(metrics, 'idem_lease_lost_total'),
      tokens: sum(metrics, 'idem_llm_tokens_saved_total'),
      usd: sum(metrics, 'idem_llm_cost_saved_usd_total'),
      storeLatency: buckets(metrics, 'idem_store_operation_duration_seconds'),
      waitTime: buckets(metrics, 'idem_gateway_wait_duration_seconds'),
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
`;
