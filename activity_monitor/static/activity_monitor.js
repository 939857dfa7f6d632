// The activity monitor page: reads the admin activity API and draws what it answers.
//
// Data flow: the URL query holds the view (range, metrics, overlays); loadRange() fetches
// /trends for the range (all six metrics, the same request the cache warmer makes), /trends for
// the previous period of equal length and /breakdown, then render() draws the selected metrics.
// Toggling a metric or an overlay re-renders without a request. Every value from the server is
// inserted with textContent; nothing is ever parsed as HTML. Failed requests show the server's
// message and no data at all.
"use strict";

(function () {
  const root = document.getElementById("activity-monitor");
  if (!root) {
    return;
  }

  const API = root.dataset.api;
  const TODAY = root.dataset.today;
  // The server renders one toggle per metric, in its canonical order: that is the list.
  const METRICS = Array.from(document.querySelectorAll('input[name="metric"]'), (input) => input.value);
  // Okabe–Ito: distinguishable with every common colour-vision deficiency.
  const METRIC_COLORS = {
    unique_users: "#0072B2",
    total_sessions: "#E69F00",
    total_page_views: "#009E73",
    total_api_calls: "#CC79A7",
    avg_session_duration_seconds: "#56B4E9",
    peak_concurrent_users: "#D55E00",
  };
  // Metrics whose daily values add up to a meaningful weekly total; the others show the week's mean.
  const ADDITIVE = new Set(["unique_users", "total_sessions", "total_page_views", "total_api_calls"]);
  const DEFAULTS = {
    range: "last_30_days",
    metrics: ["unique_users", "total_sessions"],
    ma7: true,
    ma30: false,
    forecast: true,
    anomalies: true,
    previous: true,
  };
  const OVERLAYS = ["ma7", "ma30", "forecast", "anomalies", "previous"];
  const HEALTH_REFRESH_MS = 60000;
  const DASH = "—";

  const $ = (id) => document.getElementById(id);
  const form = $("am-controls");
  const presetInputs = Array.from(form.querySelectorAll('input[name="range"]'));
  const metricInputs = Array.from(form.querySelectorAll('input[name="metric"]'));
  const startInput = $("am-start");
  const endInput = $("am-end");
  const metricLabels = Object.fromEntries(metricInputs.map((input) => [input.value, input.dataset.label]));

  // Charts by metric; tests read chart.data from here, exactly what is drawn.
  const charts = {};
  window.activityCharts = charts;

  let state = null;
  let loaded = null; // {key, trends, previous, breakdown} of the range on screen
  let loadSequence = 0;

  // --- formatting --------------------------------------------------------------

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

  function formatNumber(value, digits) {
    if (!isNumber(value)) {
      return DASH;
    }
    return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits || 0 }).format(value);
  }

  function formatDuration(seconds) {
    if (!isNumber(seconds)) {
      return DASH;
    }
    const whole = Math.round(seconds);
    if (whole < 60) {
      return `${whole} s`;
    }
    if (whole < 3600) {
      const seconds = whole % 60;
      const minutes = `${Math.floor(whole / 60)} min`;
      return seconds ? `${minutes} ${String(seconds).padStart(2, "0")} s` : minutes;
    }
    return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
  }

  function formatValue(metric, value) {
    if (metric === "avg_session_duration_seconds") {
      return formatDuration(value);
    }
    return formatNumber(value, isNumber(value) && Math.abs(value) < 100 ? 1 : 0);
  }

  function formatFixed(value, digits) {
    if (!isNumber(value)) {
      return DASH;
    }
    const options = { minimumFractionDigits: digits, maximumFractionDigits: digits };
    return new Intl.NumberFormat(undefined, options).format(value);
  }

  function formatPercent(value) {
    if (!isNumber(value)) {
      return DASH;
    }
    const sign = value > 0 ? "+" : "";
    return `${sign}${formatFixed(value, 1)} %`;
  }

  function formatBytes(bytes) {
    if (!isNumber(bytes)) {
      return DASH;
    }
    if (bytes < 1024) {
      return `${formatNumber(bytes)} B`;
    }
    if (bytes < 1024 * 1024) {
      return `${formatNumber(bytes / 1024, 1)} KiB`;
    }
    return `${formatNumber(bytes / (1024 * 1024), 1)} MiB`;
  }

  function parseDay(text) {
    const [year, month, day] = text.split("-").map(Number);
    return new Date(Date.UTC(year, month - 1, day));
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function addDays(text, days) {
    const date = parseDay(text);
    date.setUTCDate(date.getUTCDate() + days);
    return isoDay(date);
  }

  function daysBetween(start, end) {
    return Math.round((parseDay(end) - parseDay(start)) / 86400000) + 1;
  }

  const shortDate = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  const longDate = new Intl.DateTimeFormat(undefined, {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });

  function formatDay(text, long) {
    if (typeof text !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(text)) {
      return DASH;
    }
    return (long ? longDate : shortDate).format(parseDay(text));
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // --- state in the URL ---------------------------------------------------------------

  const isDay = (text) => typeof text === "string" && /^\d{4}-\d{2}-\d{2}$/.test(text) && !isNaN(parseDay(text));

  function presetInput(name) {
    return presetInputs.find((input) => input.value === name && input.value !== "custom");
  }

  function readState() {
    const params = new URLSearchParams(window.location.search);
    const next = { ...DEFAULTS, metrics: DEFAULTS.metrics.slice() };
    const range = params.get("range");
    if (range === "custom" && isDay(params.get("start")) && isDay(params.get("end"))) {
      next.range = "custom";
      next.start = params.get("start");
      next.end = params.get("end");
    } else if (range && presetInput(range)) {
      next.range = range;
    }
    if (next.range !== "custom") {
      const input = presetInput(next.range);
      next.start = input.dataset.start;
      next.end = input.dataset.end;
    }
    if (params.has("metrics")) {
      const wanted = new Set(params.get("metrics").split(","));
      next.metrics = METRICS.filter((metric) => wanted.has(metric));
    }
    for (const name of OVERLAYS) {
      if (params.has(name)) {
        next[name] = params.get(name) === "1";
      }
    }
    return next;
  }

  function stateQuery(view) {
    const params = new URLSearchParams();
    params.set("range", view.range);
    if (view.range === "custom") {
      params.set("start", view.start);
      params.set("end", view.end);
    }
    params.set("metrics", view.metrics.join(","));
    for (const name of OVERLAYS) {
      params.set(name, view[name] ? "1" : "0");
    }
    return `?${params.toString().replace(/%2C/g, ",")}`;
  }

  function saveState() {
    const query = stateQuery(state);
    if (query !== window.location.search) {
      window.history.pushState(null, "", query);
    }
  }

  function showStateInControls() {
    for (const input of presetInputs) {
      input.checked = input.value === state.range;
    }
    startInput.value = state.start;
    endInput.value = state.end;
    for (const input of metricInputs) {
      input.checked = state.metrics.includes(input.value);
    }
    for (const name of OVERLAYS) {
      $(`am-${name}`).checked = state[name];
    }
    const days = daysBetween(state.start, state.end);
    $("am-period-text").textContent =
      `${formatDay(state.start, true)} – ${formatDay(state.end, true)} (${formatNumber(days)} days)`;
    updateExportLinks();
  }

  function updateExportLinks() {
    for (const format of ["csv", "json"]) {
      const link = $(`am-export-${format}`);
      // Only what is on screen can be exported: nothing while loading, after an error or when empty.
      if (state.metrics.length === 0 || root.dataset.state !== "ready") {
        link.removeAttribute("href");
        link.setAttribute("aria-disabled", "true");
        continue;
      }
      const params = new URLSearchParams({
        start_date: state.start,
        end_date: state.end,
        metrics: state.metrics.join(","),
        format,
      });
      link.href = `${API}/export?${params.toString()}`;
      link.removeAttribute("aria-disabled");
    }
  }

  // --- requests -------------------------------------------------------------------------

  class ApiError extends Error {}

  async function getJson(url) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    } catch (error) {
      throw new ApiError("The server could not be reached; check the connection and try again.");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok || !body || body.success === false) {
      if (body && typeof body.error === "string") {
        throw new ApiError(body.error);
      }
      throw new ApiError(`The server answered ${response.status} ${response.statusText}`.trim() + ".");
    }
    return body;
  }

  function rangeQuery(start, end) {
    return new URLSearchParams({ start_date: start, end_date: end }).toString();
  }

  async function loadRange() {
    const sequence = ++loadSequence;
    const { start, end } = state;
    const key = `${start}/${end}`;
    showState("loading");
    // The server's rule for previous_period: the same length, shifted by whole weeks so weekdays line up.
    const shift = Math.ceil(daysBetween(start, end) / 7) * 7;
    const previousStart = addDays(start, -shift);
    const previousEnd = addDays(end, -shift);
    try {
      const [trends, previous, breakdown] = await Promise.all([
        getJson(`${API}/trends?${rangeQuery(start, end)}`),
        getJson(`${API}/trends?${rangeQuery(previousStart, previousEnd)}`),
        getJson(`${API}/breakdown?${rangeQuery(start, end)}`),
      ]);
      if (sequence !== loadSequence) {
        return;
      }
      loaded = { key, trends: trends.data, previous: previous.data, breakdown: breakdown.data };
      render();
      loadCacheStats(); // the answers just fetched may have filled the cache
    } catch (error) {
      if (sequence !== loadSequence) {
        return;
      }
      loaded = null;
      showError(error instanceof ApiError ? error.message : "The page failed to draw the data.");
      if (!(error instanceof ApiError)) {
        throw error;
      }
    }
  }

  // --- page states ------------------------------------------------------------------------

  function showState(name) {
    root.dataset.state = name;
    root.setAttribute("aria-busy", name === "loading" ? "true" : "false");
    $("am-loading").hidden = name !== "loading";
    $("am-error").hidden = name !== "error";
    $("am-empty").hidden = name !== "empty";
    $("am-results").hidden = name !== "ready";
    $("am-pages-panel").hidden = name !== "ready";
    $("am-roles-panel").hidden = name !== "ready";
    if (name !== "ready") {
      destroyCharts();
    }
    updateExportLinks();
    if (name === "error" || name === "empty") {
      clearBreakdown();
    }
  }

  function showError(message) {
    showState("error");
    $("am-error-message").textContent = message;
  }

  // --- rendering -------------------------------------------------------------------------

  function firstPoints(trends) {
    return trends.metrics[METRICS.find((metric) => trends.metrics[metric])] || [];
  }

  function summarizedDays(trends) {
    return firstPoints(trends).filter((point) => !point.filled && !point.no_data).length;
  }

  function noDataDays(trends) {
    return firstPoints(trends).filter((point) => point.no_data).length;
  }

  function render() {
    if (!loaded || loaded.key !== `${state.start}/${state.end}`) {
      loadRange();
      return;
    }
    if (typeof window.Chart !== "function") {
      showError("The chart library did not load (static/vendor/chartjs/chart.umd.min.js).");
      return;
    }
    if (summarizedDays(loaded.trends) === 0) {
      showState("empty");
      return;
    }
    showState("ready");
    renderCards();
    renderCharts();
    renderBreakdown(loaded.breakdown);
    const untracked = noDataDays(loaded.trends);
    const filled = loaded.trends.period.days - untracked - summarizedDays(loaded.trends);
    const notes = [];
    if (untracked > 0) {
      notes.push(
        `${formatNumber(untracked)} days before tracking began (${formatDay(loaded.trends.tracking_began, true)}) ` +
          "are shaded: they have no data and take part in no figure.",
      );
    }
    if (filled > 0) {
      notes.push(
        `${formatNumber(filled)} of ${formatNumber(loaded.trends.period.days)} days have no summary ` +
          "and are drawn as gaps; the averages and the forecast count them as 0.",
      );
    }
    const note = $("am-gaps-note");
    note.hidden = notes.length === 0;
    note.textContent = notes.join(" ");
  }

  function forecastFigure(metric, forecast) {
    const values = forecast.map((point) => point.value).filter(isNumber);
    const label = `Next ${values.length || 7} days`;
    if (values.length === 0) {
      return { label, value: DASH };
    }
    const total = values.reduce((sum, value) => sum + value, 0);
    if (ADDITIVE.has(metric)) {
      return { label, value: `${formatNumber(total)} total` };
    }
    return { label, value: `${formatValue(metric, total / values.length)} per day` };
  }

  function renderCards() {
    const list = $("am-cards");
    list.replaceChildren();
    if (state.metrics.length === 0) {
      list.append(element("li", "am-card am-card-hint", "Choose at least one metric above."));
      return;
    }
    for (const metric of state.metrics) {
      const summary = loaded.trends.summary[metric];
      const card = element("li", `am-card am-metric-${metric}`);
      card.dataset.metric = metric;
      card.append(element("h3", "am-card-title", metricLabels[metric]));
      card.append(element("p", "am-card-value", formatValue(metric, summary.average)));
      card.append(element("p", "am-card-caption", "average per day"));

      const previous = summary.previous_period || {};
      const change = previous.change_vs_previous_percent;
      const direction = !isNumber(change) ? "none" : change > 0.05 ? "up" : change < -0.05 ? "down" : "flat";
      const arrow = { up: "▲", down: "▼", flat: "▶", none: "" }[direction];
      const changeLine = element("p", `am-change am-change-${direction}`);
      changeLine.dataset.role = "change";
      if (arrow) {
        changeLine.append(element("span", "am-arrow", arrow));
        changeLine.firstChild.setAttribute("aria-hidden", "true");
      }
      changeLine.append(element("span", "am-change-value", formatPercent(change)));
      const against = isNumber(previous.average)
        ? ` vs previous period (avg ${formatValue(metric, previous.average)})`
        : " vs previous period (no data)";
      changeLine.append(element("span", "am-change-caption", against));
      card.append(changeLine);

      const trend = summary.trend_analysis || {};
      const trendArrow = { increasing: "↗", decreasing: "↘", stable: "→" }[trend.direction] || "";
      const trendText = trend.direction ? `${trendArrow} ${trend.direction}` : DASH;
      const facts = element("dl", "am-card-facts");
      facts.append(element("dt", "", "Trend"));
      facts.append(element("dd", "", `${trendText} · R² ${formatFixed(trend.confidence, 2)}`));
      const forecast = forecastFigure(metric, trend.forecast || []);
      facts.append(element("dt", "", forecast.label));
      facts.append(element("dd", "", forecast.value));
      card.append(facts);
      list.append(card);
    }
  }

  function destroyCharts() {
    for (const metric of Object.keys(charts)) {
      charts[metric].destroy();
      delete charts[metric];
    }
    $("am-charts").replaceChildren();
  }

  function withAlpha(hex, alpha) {
    const value = parseInt(hex.slice(1), 16);
    return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
  }

  function chartDatasets(metric, labels) {
    const color = METRIC_COLORS[metric];
    const points = loaded.trends.metrics[metric];
    const summary = loaded.trends.summary[metric];
    const forecast = (summary.trend_analysis && summary.trend_analysis.forecast) || [];
    const days = points.length;
    const pad = (values) => values.concat(new Array(labels.length - values.length).fill(null));
    const daily = (field) => pad(points.map((point) => (point.filled ? null : point[field])));
    const dense = days > 62;
    const datasets = [
      {
        key: "value",
        label: metricLabels[metric],
        data: daily("value"),
        borderColor: color,
        backgroundColor: color,
        borderWidth: 2,
        pointRadius: dense ? 0 : 2.5,
        pointHoverRadius: 4,
        order: 1,
      },
    ];
    if (state.ma7) {
      datasets.push({
        key: "7day_avg",
        label: "7-day average",
        data: daily("7day_avg"),
        borderColor: "#1d2330",
        backgroundColor: "#1d2330",
        borderDash: [6, 4],
        borderWidth: 1.5,
        pointRadius: 0,
        order: 2,
      });
    }
    if (state.ma30) {
      datasets.push({
        key: "30day_avg",
        label: "30-day average",
        data: daily("30day_avg"),
        borderColor: "#6b7280",
        backgroundColor: "#6b7280",
        borderDash: [2, 3],
        borderWidth: 2,
        pointRadius: 0,
        order: 3,
      });
    }
    if (state.previous && loaded.previous && loaded.previous.metrics[metric]) {
      const previousPoints = loaded.previous.metrics[metric];
      datasets.push({
        key: "previous",
        label: "Previous period",
        data: pad(previousPoints.map((point) => (point.filled ? null : point.value))),
        dates: previousPoints.map((point) => point.date),
        borderColor: withAlpha(color, 0.35),
        backgroundColor: withAlpha(color, 0.35),
        borderWidth: 1.5,
        pointRadius: 0,
        order: 4,
      });
    }
    if (state.forecast && forecast.length) {
      // The band and the line start at the last drawn day, so the forecast continues the series.
      const last = points[days - 1];
      const anchor = last && !last.filled ? last.value : null;
      const series = (field) => new Array(days - 1).fill(null).concat([anchor], forecast.map((p) => p[field]));
      datasets.push(
        {
          key: "forecast",
          label: "Forecast",
          data: series("value"),
          borderColor: color,
          backgroundColor: color,
          borderDash: [4, 4],
          borderWidth: 2,
          pointRadius: 0,
          order: 5,
        },
        {
          key: "forecast_lower",
          label: "Forecast lower bound",
          data: series("lower"),
          borderWidth: 0,
          pointRadius: 0,
          fill: false,
          order: 6,
        },
        {
          key: "forecast_upper",
          label: "95 % forecast band",
          data: series("upper"),
          borderWidth: 0,
          pointRadius: 0,
          backgroundColor: withAlpha(color, 0.18),
          borderColor: withAlpha(color, 0.18),
          fill: "-1",
          order: 6,
        },
      );
    }
    if (state.anomalies && summary.anomalies && summary.anomalies.length) {
      const byDate = new Map(summary.anomalies.map((anomaly) => [anomaly.date, anomaly]));
      datasets.push({
        key: "anomalies",
        label: "Anomaly",
        data: labels.map((date) => (byDate.has(date) ? byDate.get(date).value : null)),
        expected: labels.map((date) => (byDate.has(date) ? byDate.get(date).expected : null)),
        showLine: false,
        pointStyle: "rectRot",
        pointRadius: 7,
        pointHoverRadius: 9,
        borderColor: "#ffffff",
        backgroundColor: "#000000",
        borderWidth: 1.5,
        order: 0,
      });
    }
    return datasets;
  }

  // Seconds on the duration axis fall on whole minutes (or half minutes), not on 200 s steps.
  function minuteTicks(axis) {
    const steps = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    const step = steps.find((candidate) => axis.max / candidate <= 8) || Math.ceil(axis.max / 8 / 3600) * 3600;
    axis.ticks = [];
    for (let value = 0; value <= axis.max + 1e-9; value += step) {
      axis.ticks.push({ value });
    }
  }

  function legendLabels(chart) {
    const items = window.Chart.defaults.plugins.legend.labels.generateLabels(chart);
    return items
      .filter((item) => chart.data.datasets[item.datasetIndex].key !== "forecast_lower")
      .map((item) => {
        const key = chart.data.datasets[item.datasetIndex].key;
        if (key === "anomalies") {
          return { ...item, pointStyle: "rectRot", fillStyle: "#000000", strokeStyle: "#000000" };
        }
        if (key === "forecast_upper") {
          return { ...item, pointStyle: "rect", lineWidth: 0 };
        }
        return { ...item, pointStyle: "line", lineWidth: 3 };
      });
  }

  function tooltipLabel(metric) {
    return (item) => {
      const dataset = item.dataset;
      const value = formatValue(metric, item.parsed.y);
      if (dataset.key === "previous") {
        return `Previous period (${formatDay(dataset.dates[item.dataIndex], false)}): ${value}`;
      }
      if (dataset.key === "forecast_upper") {
        const lower = item.chart.data.datasets.find((d) => d.key === "forecast_lower");
        return `95 % band: ${formatValue(metric, lower.data[item.dataIndex])} – ${value}`;
      }
      if (dataset.key === "anomalies") {
        return `Anomaly: ${value} (expected ${formatValue(metric, dataset.expected[item.dataIndex])})`;
      }
      return `${dataset.label}: ${value}`;
    };
  }

  // Shades the days before tracking began (points with no_data) behind the lines.
  function noDataShading(points) {
    const untracked = points.map((point) => Boolean(point.no_data));
    return {
      id: "amNoData",
      beforeDatasetsDraw(chart) {
        if (!untracked.includes(true)) {
          return;
        }
        const { ctx, chartArea, scales } = chart;
        const step = untracked.length > 1 ? scales.x.getPixelForValue(1) - scales.x.getPixelForValue(0) : 0;
        ctx.save();
        ctx.fillStyle = "rgba(120, 128, 140, 0.16)";
        untracked.forEach((shaded, index) => {
          if (shaded) {
            const x = scales.x.getPixelForValue(index) - step / 2;
            const left = Math.max(x, chartArea.left);
            const right = Math.min(x + Math.max(step, 1), chartArea.right);
            ctx.fillRect(left, chartArea.top, right - left, chartArea.bottom - chartArea.top);
          }
        });
        ctx.restore();
      },
    };
  }

  function renderCharts() {
    destroyCharts();
    const container = $("am-charts");
    const forecastDates = (metric) =>
      (loaded.trends.summary[metric].trend_analysis.forecast || []).map((point) => point.date);
    for (const metric of state.metrics) {
      const dates = loaded.trends.metrics[metric].map((point) => point.date);
      const labels = state.forecast ? dates.concat(forecastDates(metric)) : dates;
      const figure = element("figure", `am-panel am-chart-card am-metric-${metric}`);
      figure.dataset.metric = metric;
      figure.append(element("figcaption", "am-chart-title", metricLabels[metric]));
      const wrap = element("div", "am-canvas-wrap");
      const canvas = element("canvas");
      canvas.setAttribute("role", "img");
      canvas.setAttribute(
        "aria-label",
        `${metricLabels[metric]} per day from ${formatDay(state.start, true)} to ${formatDay(state.end, true)}; ` +
          `average ${formatValue(metric, loaded.trends.summary[metric].average)}.`,
      );
      wrap.append(canvas);
      figure.append(wrap);
      container.append(figure);
      charts[metric] = new window.Chart(canvas, {
        type: "line",
        plugins: [noDataShading(loaded.trends.metrics[metric])],
        data: { labels, datasets: chartDatasets(metric, labels) },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          spanGaps: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            x: {
              grid: { display: false },
              ticks: {
                autoSkip: true,
                maxRotation: 0,
                maxTicksLimit: 10,
                callback(value) {
                  return formatDay(this.getLabelForValue(value), false);
                },
              },
            },
            y: {
              beginAtZero: true,
              grid: { color: "#e8eaee" },
              ticks: { callback: (value) => formatValue(metric, value) },
              afterBuildTicks: metric === "avg_session_duration_seconds" ? minuteTicks : undefined,
            },
          },
          plugins: {
            legend: {
              position: "bottom",
              labels: {
                usePointStyle: true,
                boxWidth: 28,
                color: "#1d2330",
                generateLabels: legendLabels,
                sort: (a, b) => a.datasetIndex - b.datasetIndex,
              },
            },
            tooltip: {
              filter: (item) => item.parsed.y !== null && item.dataset.key !== "forecast_lower",
              callbacks: {
                title: (items) => (items.length ? formatDay(items[0].label, true) : ""),
                label: tooltipLabel(metric),
              },
            },
          },
        },
      });
    }
  }

  function shareCell(fraction) {
    const cell = element("td");
    const inner = element("div", "am-share");
    const bar = element("span", "am-bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = element("span", "am-bar-fill");
    // CSSOM, not a style attribute: allowed by the page's style-src 'self'.
    fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
    bar.append(fill);
    inner.append(bar, element("span", "am-share-text", formatPercent(fraction * 100).replace("+", "")));
    cell.append(inner);
    return cell;
  }

  function clearBreakdown() {
    $("am-pages").tBodies[0].replaceChildren();
    $("am-roles").tBodies[0].replaceChildren();
  }

  function emptyRow(columns, text) {
    const row = element("tr", "am-empty-row");
    const cell = element("td", "", text);
    cell.colSpan = columns;
    row.append(cell);
    return row;
  }

  function renderBreakdown(breakdown) {
    const pages = $("am-pages").tBodies[0];
    pages.replaceChildren();
    const total = breakdown.top_pages.reduce((sum, entry) => sum + entry.count, 0);
    $("am-pages-caption").textContent =
      `Requests in the ${formatNumber(breakdown.summarized_days)} summarized days of the range ` +
      "(each day counts its ten most requested pages)";
    if (breakdown.top_pages.length === 0) {
      pages.append(emptyRow(4, "No requests in this range."));
    }
    breakdown.top_pages.forEach((entry, index) => {
      const row = element("tr");
      row.append(element("td", "am-num am-rank", String(index + 1)));
      const pageCell = element("td", "am-page");
      const code = element("code", "", entry.page);
      code.title = entry.page;
      pageCell.append(code);
      row.append(pageCell, element("td", "am-num", formatNumber(entry.count)));
      row.append(shareCell(total ? entry.count / total : 0));
      pages.append(row);
    });

    const roles = $("am-roles").tBodies[0];
    roles.replaceChildren();
    const entries = Object.entries(breakdown.users_by_role);
    const sum = entries.reduce((acc, [, value]) => acc + (value.average_daily || 0), 0);
    if (entries.length === 0) {
      roles.append(emptyRow(4, "No users in this range."));
    }
    for (const [role, value] of entries) {
      const row = element("tr");
      row.append(element("th", "am-role", role.charAt(0).toUpperCase() + role.slice(1)));
      row.firstChild.scope = "row";
      row.append(element("td", "am-num", formatNumber(value.average_daily, 1)));
      row.append(element("td", "am-num", formatNumber(value.max_daily)));
      row.append(shareCell(sum ? value.average_daily / sum : 0));
      roles.append(row);
    }
  }

  // --- cache panel and health badge ----------------------------------------------------

  async function loadCacheStats() {
    const list = $("am-cache-stats");
    try {
      const stats = (await getJson(`${API}/cache/stats`)).stats;
      const facts = [
        ["Entries", formatNumber(stats.size)],
        ["Memory", formatBytes(stats.bytes)],
        ["Hit rate", isNumber(stats.hit_rate) ? `${formatNumber(stats.hit_rate * 100, 1)} %` : DASH],
        ["Hits", formatNumber(stats.hits)],
        ["Misses", formatNumber(stats.misses)],
        ["Evictions", formatNumber(stats.evictions)],
      ];
      list.replaceChildren();
      for (const [name, value] of facts) {
        const item = element("div", "am-stat");
        item.append(element("dt", "", name), element("dd", "", value));
        list.append(item);
      }
    } catch (error) {
      list.replaceChildren();
      $("am-cache-message").textContent = `Cache statistics unavailable: ${error.message}`;
    }
  }

  async function clearCache() {
    const message = $("am-cache-message");
    if (!window.confirm("Clear the trends cache? Every worker will recompute trends on the next request.")) {
      return;
    }
    try {
      let response;
      try {
        response = await fetch(`${API}/cache/clear`, {
          method: "POST",
          credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRF-Token": root.dataset.csrfToken || "" },
        });
      } catch (error) {
        throw new ApiError("The server could not be reached; the cache was not cleared.");
      }
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || body.success !== true) {
        throw new ApiError(body && body.error ? body.error : `The server answered ${response.status}.`);
      }
      message.textContent =
        `Cache cleared: ${formatNumber(body.entries_removed)} entries removed ` +
        `(data version ${formatNumber(body.data_version)}).`;
    } catch (error) {
      message.textContent = `The cache was not cleared: ${error.message}`;
    }
    loadCacheStats();
  }

  function describeCheck(name, check) {
    if (!check || typeof check !== "object") {
      return DASH;
    }
    if (name === "performance") {
      const trends = check.trends || check["trends:miss"] || check["trends:hit"];
      const endpoints = Object.keys(check).length;
      return trends
        ? `trends p95 ${formatNumber(trends.p95_ms, 1)} ms over ${formatNumber(trends.count)} requests`
        : `${formatNumber(endpoints)} endpoints measured`;
    }
    const parts = [check.status || DASH];
    if (typeof check.error === "string") {
      parts.push(check.error);
    }
    if (isNumber(check.latency_ms)) {
      parts.push(`${formatNumber(check.latency_ms, 1)} ms`);
    }
    if (name === "database") {
      parts.push(check.latest_summarized_day ? `latest day ${check.latest_summarized_day}` : "no summaries yet");
    }
    if (typeof check.backend === "string") {
      parts.push(check.backend);
    }
    if (typeof check.storage === "string") {
      parts.push(check.storage);
    }
    if (typeof check.detail === "string") {
      parts.push(check.detail);
    }
    return parts.join(" · ");
  }

  async function loadHealth() {
    const badge = $("am-health-badge");
    const list = $("am-health-checks");
    let report = null;
    let problem = "";
    try {
      const response = await fetch(`${API}/health`, { headers: { Accept: "application/json" } });
      report = await response.json().catch(() => null);
      if (!report || typeof report.status !== "string") {
        problem = report && report.error ? report.error : `The server answered ${response.status}.`;
        report = null;
      }
    } catch (error) {
      problem = "The server could not be reached.";
    }
    list.replaceChildren();
    if (!report) {
      badge.dataset.status = "unknown";
      badge.textContent = "Health unknown";
      list.append(element("li", "", problem));
      return;
    }
    const names = { healthy: "Healthy", degraded: "Degraded", unhealthy: "Unhealthy" };
    badge.dataset.status = report.status;
    badge.textContent = `Monitor ${names[report.status] ? names[report.status].toLowerCase() : report.status}`;
    for (const [name, check] of Object.entries(report.checks || {})) {
      const item = element("li");
      item.dataset.status = (check && check.status) || "info";
      item.append(element("strong", "", name.replace(/_/g, " ")), element("span", "", describeCheck(name, check)));
      list.append(item);
    }
  }

  // --- events -------------------------------------------------------------------------------

  function applyState(next, { push }) {
    state = next;
    showStateInControls();
    if (push) {
      saveState();
    }
    render();
  }

  function showRangeError(text) {
    const error = $("am-range-error");
    error.hidden = !text;
    error.textContent = text || "";
  }

  for (const input of presetInputs) {
    input.addEventListener("change", () => {
      showRangeError("");
      if (input.value === "custom") {
        applyState({ ...state, range: "custom" }, { push: true });
        startInput.focus();
        return;
      }
      applyState({ ...state, range: input.value, start: input.dataset.start, end: input.dataset.end }, { push: true });
    });
  }

  for (const input of [startInput, endInput]) {
    input.addEventListener("input", () => {
      $("am-range-custom").checked = true;
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const start = startInput.value;
    const end = endInput.value;
    if (!isDay(start) || !isDay(end)) {
      showRangeError("Enter both days of the range.");
      return;
    }
    if (end < start) {
      showRangeError("The range must end on or after the day it starts.");
      return;
    }
    if (end > TODAY) {
      showRangeError(`The range cannot end after today (${formatDay(TODAY, true)}).`);
      return;
    }
    showRangeError("");
    applyState({ ...state, range: "custom", start, end }, { push: true });
  });

  for (const input of metricInputs) {
    input.addEventListener("change", () => {
      const chosen = metricInputs.filter((box) => box.checked).map((box) => box.value);
      applyState({ ...state, metrics: chosen }, { push: true });
    });
  }

  for (const name of OVERLAYS) {
    $(`am-${name}`).addEventListener("change", (event) => {
      applyState({ ...state, [name]: event.target.checked }, { push: true });
    });
  }

  $("am-retry").addEventListener("click", () => {
    loaded = null;
    render();
  });
  $("am-cache-refresh").addEventListener("click", () => {
    $("am-cache-message").textContent = "";
    loadCacheStats();
  });
  $("am-cache-clear").addEventListener("click", clearCache);
  window.addEventListener("popstate", () => applyState(readState(), { push: false }));

  applyState(readState(), { push: false });
  window.history.replaceState(null, "", stateQuery(state));
  loadCacheStats();
  loadHealth();
  window.setInterval(loadHealth, HEALTH_REFRESH_MS);
})();
