// Output comparison charts (uPlot): overlay, scatter original vs Keras, error histogram.
import uPlot from "uplot";
import { h } from "./dom.js";

const W = 300, H = 190;

function frame(title, build) {
  const el = h("div.chart", {}, h("div.chart-title", {}, title));
  try {
    build(el);
  } catch (err) {
    el.append(h("div.muted", {}, "chart failed: " + err.message));
  }
  return el;
}

export function overlayChart(orig, keras) {
  const title = h("span", {}, "values: ", h("b", { style: { color: "#1e88e5" } }, "original"), " vs ", h("b", { style: { color: "#f57c00" } }, "Keras (dashed)"));
  return frame(title, (el) => {
    const x = orig.map((_, i) => i);
    new uPlot({
      width: W, height: H, legend: { show: false }, scales: { x: { time: false } },
      series: [{ label: "index" },
        { label: "original", stroke: "#1e88e5", width: 2 },
        { label: "keras", stroke: "#f57c00", width: 1, dash: [4, 3] }],
      axes: [{}, { size: 50 }],
    }, [x, orig, keras], el);
  });
}

export function scatterChart(orig, keras) {
  return frame("scatter: Keras vs original", (el) => {
    const pairs = orig.map((o, i) => [o, keras[i]]).sort((a, b) => a[0] - b[0]);
    const xs = pairs.map((p) => p[0]);
    new uPlot({
      width: W, height: H, legend: { show: false }, scales: { x: { time: false } },
      series: [{ label: "original" },
        { label: "y = x", stroke: "#bdbdbd", width: 1 },
        { label: "keras", stroke: "#f57c00", width: 0, paths: () => null, points: { show: true, size: 5, fill: "#f57c00" } }],
      axes: [{ label: "original" }, { label: "keras", size: 50 }],
    }, [xs, xs, pairs.map((p) => p[1])], el);
  });
}

export function histogramChart(hist) {
  const edges = hist.edges || [], counts = hist.counts || [];
  const exact = edges.length > 1 && edges[0] === edges[edges.length - 1];
  return frame(exact ? "|error| histogram (all errors exactly 0)" : "|error| histogram", (el) => {
    const centers = counts.map((_, i) => (edges[i] + edges[i + 1]) / 2);
    new uPlot({
      width: W, height: H, legend: { show: false }, scales: { x: { time: false, range: exact ? [-1, 1] : undefined } },
      series: [{ label: "|error|" },
        { label: "count", stroke: "#8e24aa", fill: "rgba(142,36,170,0.35)", paths: uPlot.paths.bars({ size: [0.9, 40] }), points: { show: false } }],
      axes: [{ label: "|error|" }, { label: "count", size: 64 }],
    }, [centers, counts], el);
  });
}
