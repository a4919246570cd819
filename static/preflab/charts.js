// Run metrics charts with uPlot: one chart per metric, one line per run and split (train
// solid, eval dashed), real ticks and grid, a tooltip at the cursor, live updates.
//
// The page holds <script id="chart-config" type="application/json"> with
//   {"metrics": [{"key", "title", "range"}], "sources": [{"label", "url", "finished"}]}
// and one <figure data-metric="KEY"> per metric. Each source URL answers the run's metrics
// as columns (training/charts.py). While any run is live the sources are fetched again every
// POLL_MS and the charts get the new data in place: the page is never redrawn.
(function () {
  "use strict";

  const POLL_MS = 2000;
  const COLOURS = ["#2f5fd0", "#d9822b", "#1c7c3c", "#b42318", "#7a4cc2", "#0f8a8a", "#8a5a2b", "#4b5563"];
  const SPLITS = ["train", "eval"];

  function format(value) {
    if (value === null || value === undefined) { return "–"; }
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) { return value.toExponential(2); }
    return String(Number(value.toPrecision(4)));
  }

  // One x column (the union of every step) and one y column per (run, split), null where a
  // line has no point at that step: uPlot wants aligned columns.
  function align(payloads, key) {
    const steps = new Set();
    const lines = [];
    payloads.forEach(function (payload, runIndex) {
      SPLITS.forEach(function (split) {
        const columns = payload.series[split];
        if (!columns || !columns.step.length) { return; }
        const bySteps = new Map();
        columns.step.forEach(function (step, i) {
          steps.add(step);
          if (columns[key][i] !== null) { bySteps.set(step, columns[key][i]); }
        });
        if (bySteps.size) { lines.push({ label: payload.label + " " + split, runIndex: runIndex, split: split, bySteps: bySteps }); }
      });
    });
    const x = Array.from(steps).sort(function (a, b) { return a - b; });
    const data = [x].concat(lines.map(function (line) {
      return x.map(function (step) { return line.bySteps.has(step) ? line.bySteps.get(step) : null; });
    }));
    return { lines: lines, data: data };
  }

  function tooltipPlugin() {
    let tip;
    return {
      hooks: {
        init: function (u) {
          tip = document.createElement("div");
          tip.className = "chart-tooltip";
          tip.hidden = true;
          u.over.appendChild(tip);
          u.over.addEventListener("mouseleave", function () { tip.hidden = true; });
        },
        setCursor: function (u) {
          const idx = u.cursor.idx;
          if (idx === null || idx === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
          tip.replaceChildren();
          const head = document.createElement("strong");
          head.textContent = "step " + u.data[0][idx];
          tip.appendChild(head);
          u.series.forEach(function (series, i) {
            if (i === 0 || !series.show || u.data[i][idx] === null) { return; }
            const row = document.createElement("div");
            const swatch = document.createElement("span");
            swatch.className = "swatch";
            swatch.style.background = series._stroke || series.stroke;
            row.appendChild(swatch);
            row.appendChild(document.createTextNode(series.label + ": " + format(u.data[i][idx])));
            tip.appendChild(row);
          });
          tip.hidden = tip.childNodes.length < 2;
          const left = Math.min(u.cursor.left + 12, u.over.clientWidth - tip.offsetWidth - 4);
          tip.style.left = Math.max(0, left) + "px";
          tip.style.top = Math.max(0, u.cursor.top - tip.offsetHeight - 8) + "px";
        },
      },
    };
  }

  function options(metric, lines, width, lastStep, singleRun) {
    const axisFont = "12px system-ui, sans-serif";
    return {
      width: width,
      height: 220,
      plugins: [tooltipPlugin()],
      cursor: { drag: { x: true, y: false }, points: { size: 7 } },
      legend: { live: true },
      scales: {
        // From step 0 to the run's planned last step, so a live run's line grows into place.
        x: { time: false, range: function (u, min, max) { return [Math.min(0, min), Math.max(max, lastStep, 1)]; } },
        y: metric.range ? { range: metric.range } : { auto: true },
      },
      axes: [
        {
          label: "step", font: axisFont, labelFont: axisFont,
          grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#cbd0d8" },
          // Steps are whole numbers: never a tick at 1.5.
          incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 50000, 100000],
          values: function (u, ticks) { return ticks.map(String); },
        },
        {
          font: axisFont,
          grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#cbd0d8" },
          values: function (u, ticks) { return ticks.map(format); },
          // Wide enough for the longest label, so "0.00247" is never clipped to "00247".
          size: function (u, values) {
            if (!values) { return 50; }
            const longest = values.reduce(function (n, v) { return Math.max(n, String(v).length); }, 0);
            return Math.max(40, 14 + longest * 7.5);
          },
        },
      ],
      series: [{ label: "step", value: function (u, v) { return v === null ? "–" : String(v); } }].concat(lines.map(function (line) {
        // One run: a colour per split. Several: a colour per run, eval dashed.
        const colour = COLOURS[(singleRun ? SPLITS.indexOf(line.split) : line.runIndex) % COLOURS.length];
        return {
          label: line.label,
          stroke: colour,
          width: 2,
          dash: line.split === "eval" ? [6, 4] : undefined,
          spanGaps: true,
          points: { show: function (u) { return u.data[0].length <= 1 || line.split === "eval"; } },
          value: function (u, v) { return format(v); },
        };
      })),
    };
  }

  function summary(metric, aligned) {
    return metric.title + ": " + aligned.lines.map(function (line, i) {
      const ys = aligned.data[i + 1];
      for (let j = ys.length - 1; j >= 0; j -= 1) {
        if (ys[j] !== null) { return line.label + " " + format(ys[j]) + " at step " + aligned.data[0][j]; }
      }
      return line.label + " no data";
    }).join("; ");
  }

  function Chart(figure, metric) {
    this.figure = figure;
    this.metric = metric;
    this.plot = null;
    this.signature = "";
  }

  Chart.prototype.update = function (payloads) {
    const aligned = align(payloads, this.metric.key);
    const empty = this.figure.querySelector("[data-empty]");
    const target = this.figure.querySelector(".plot");
    this.figure.querySelector("[data-summary]").textContent = summary(this.metric, aligned);
    if (!aligned.lines.length) {
      if (empty) { empty.hidden = false; empty.textContent = "No data yet."; }
      return;
    }
    if (empty) { empty.hidden = true; }
    // Same lines as before: new data in place. New lines (eval appears): build the chart again.
    const signature = aligned.lines.map(function (line) { return line.label; }).join("|");
    if (this.plot && signature === this.signature) {
      this.plot.setData(aligned.data);
      return;
    }
    if (this.plot) { this.plot.destroy(); }
    this.signature = signature;
    const lastStep = payloads.reduce(function (n, p) { return Math.max(n, p.total_steps || 0); }, 0);
    const opts = options(this.metric, aligned.lines, target.clientWidth || 320, lastStep, payloads.length === 1);
    this.plot = new window.uPlot(opts, aligned.data, target);
  };

  Chart.prototype.resize = function () {
    if (this.plot) {
      const width = this.figure.querySelector(".plot").clientWidth;
      if (width && width !== this.plot.width) { this.plot.setSize({ width: width, height: 220 }); }
    }
  };

  function start() {
    const configNode = document.getElementById("chart-config");
    if (!configNode || !window.uPlot) { return; }
    const config = JSON.parse(configNode.textContent);
    const charts = config.metrics.map(function (metric) {
      const figure = document.querySelector('figure[data-metric="' + CSS.escape(metric.key) + '"]');
      return figure ? new Chart(figure, metric) : null;
    }).filter(Boolean);
    if (!config.sources.length || !charts.length) { return; }

    function poll() {
      Promise.all(config.sources.map(function (source) {
        return fetch(source.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (response) {
            if (!response.ok) { throw new Error(source.url + " answered " + response.status); }
            return response.json();
          });
      })).then(function (payloads) {
        charts.forEach(function (chart) { chart.update(payloads); });
        if (payloads.some(function (payload) { return !payload.finished; })) {
          window.setTimeout(poll, POLL_MS);
        }
      }).catch(function () {
        // A network blip: try again later rather than leave the charts frozen.
        window.setTimeout(poll, POLL_MS * 3);
      });
    }
    poll();
    if (window.ResizeObserver) {
      const observer = new ResizeObserver(function () { charts.forEach(function (chart) { chart.resize(); }); });
      charts.forEach(function (chart) { observer.observe(chart.figure); });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
