// Quality page bar charts with uPlot (labeling/quality_views.py, chart_config).
//
// The page holds <script id="quality-charts" type="application/json"> with
//   {"charts": [{"id", "title", "labels": [...], "series": [{"label", "values": [...]}],
//                "range": [lo, hi] | null, "reference": number | null, "y_label"}]}
// and one <figure data-quality-chart="ID"> per chart. Bars sit at x = 0, 1, 2, ... and the axis
// names them with the labels; a dashed line marks the reference (0.5: no bias). Values come
// from a cached report, so the charts are drawn once; nothing is fetched.
(function () {
  "use strict";

  const COLOURS = ["#2f5fd0", "#d9822b", "#1c7c3c", "#b42318"];
  const HEIGHT = 220;

  function format(value, share) {
    if (value === null || value === undefined) { return "–"; }
    if (share) { return (100 * value).toFixed(Number.isInteger(100 * value) ? 0 : 1) + "%"; }
    return String(Number(value.toPrecision(4)));
  }

  // A chart on a 0 to 1 scale plots shares: every tick and value reads as a percentage.
  function isShare(chart) {
    return Boolean(chart.range) && chart.range[0] === 0 && chart.range[1] === 1;
  }

  function referencePlugin(value) {
    return {
      hooks: {
        draw: function (u) {
          if (value === null || value === undefined) { return; }
          const ctx = u.ctx;
          const y = Math.round(u.valToPos(value, "y", true));
          ctx.save();
          ctx.strokeStyle = "#6b7280";
          ctx.setLineDash([6, 4]);
          ctx.lineWidth = 1;
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
          ctx.restore();
        },
      },
    };
  }

  function options(chart, width) {
    const axisFont = "12px system-ui, sans-serif";
    const labels = chart.labels;
    const share = isShare(chart);
    const longest = labels.reduce(function (n, label) { return Math.max(n, label.length); }, 0);
    const slanted = labels.length > 8 || (labels.length > 3 && longest > 10);
    const bars = window.uPlot.paths.bars({ size: [0.6, 60], align: 0 });
    return {
      width: width,
      height: HEIGHT,
      plugins: [referencePlugin(chart.reference)],
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      legend: { live: true },
      scales: {
        x: { time: false, range: function () { return [-0.5, labels.length - 0.5]; } },
        y: chart.range ? { range: chart.range } : { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } },
      },
      axes: [
        {
          font: axisFont, grid: { show: false }, ticks: { stroke: "#cbd0d8" },
          incrs: [1], space: 10,
          splits: function () { return labels.map(function (_, i) { return i; }); },
          values: function (u, ticks) {
            // Thin out the names when there are too many to read (every annotator, say).
            const every = Math.max(1, Math.ceil(labels.length / Math.max(1, Math.floor(u.bbox.width / 70))));
            return ticks.map(function (t) { return t % every === 0 ? labels[t] : ""; });
          },
          rotate: slanted ? -40 : 0,
          size: slanted ? Math.min(120, 20 + longest * 6) : 40,
        },
        {
          label: chart.y_label, font: axisFont, labelFont: axisFont,
          grid: { stroke: "#e5e7eb" }, ticks: { stroke: "#cbd0d8" },
          values: function (u, ticks) { return ticks.map(function (t) { return format(t, share); }); },
          size: 56,
        },
      ],
      series: [{ label: "", value: function (u, v) { return v === null ? "–" : labels[v] || ""; } }].concat(
        chart.series.map(function (series, i) {
          return {
            label: series.label,
            stroke: COLOURS[i % COLOURS.length],
            fill: COLOURS[i % COLOURS.length] + "cc",
            paths: bars,
            points: { show: false },
            value: function (u, v) { return format(v, share); },
          };
        })
      ),
    };
  }

  function summary(chart) {
    const series = chart.series[0];
    if (!series) { return ""; }
    const share = isShare(chart);
    return chart.labels.map(function (label, i) { return label + ": " + format(series.values[i], share); }).join("; ");
  }

  function start() {
    const node = document.getElementById("quality-charts");
    if (!node || !window.uPlot) { return; }
    const config = JSON.parse(node.textContent);
    const plots = [];
    config.charts.forEach(function (chart) {
      const figure = document.querySelector('figure[data-quality-chart="' + CSS.escape(chart.id) + '"]');
      if (!figure) { return; }
      const target = figure.querySelector(".plot");
      const data = [chart.labels.map(function (_, i) { return i; })].concat(
        chart.series.map(function (series) { return series.values; })
      );
      const plot = new window.uPlot(options(chart, target.clientWidth || 320), data, target);
      figure.querySelector("[data-summary]").textContent = summary(chart);
      plots.push({ plot: plot, target: target });
    });
    if (window.ResizeObserver) {
      const observer = new ResizeObserver(function () {
        plots.forEach(function (p) {
          const width = p.target.clientWidth;
          if (width && width !== p.plot.width) { p.plot.setSize({ width: width, height: HEIGHT }); }
        });
      });
      plots.forEach(function (p) { observer.observe(p.target.parentElement); });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
