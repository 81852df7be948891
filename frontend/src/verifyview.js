// Verification view: per-layer errors, gradients, per-output comparison charts.
import { h, clear, fmt, fmtInt } from "./dom.js";
import { STATUS_COLOR } from "./colors.js";
import { overlayChart, scatterChart, histogramChart } from "./charts.js";

const status = (st) => h("span.status", { style: { background: STATUS_COLOR[st] || "#9e9e9e" } }, st || "–");

function errCells(e) {
  e = e || {};
  return [h("td.num", {}, fmt(e.max_abs)), h("td.num", {}, fmt(e.max_rel)), h("td.num", {}, fmt(e.mean_abs)), h("td", {}, status(e.status))];
}

// report: GET report (or a job result turned into one); onNode(name) jumps to the graph.
export function renderVerification(host, report, onNode) {
  clear(host);
  if (!report) {
    host.append(h("div.empty", {}, "No verification yet for this run. Press Export to convert and verify it."));
    return;
  }
  const conv = report.conversion || {};
  const ver = report.verification;
  const layerNodes = new Map((conv.layers || []).map((l) => [l.layer, l.tf_nodes || []]));
  const classes = new Map((conv.layers || []).map((l) => [l.layer, l]));
  host.append(h("div.vhead", {},
    h("h3", {}, "Verification", ver ? [" ", status(passed(ver) ? "OK" : "FAILED")] : ""),
    h("span.muted", {}, `attempt ${report.attempt ?? "?"}`, report.created ? ` · ${report.created}` : "",
      ver ? ` · atol ${fmt(ver.atol)} · rtol ${fmt(ver.rtol)}` : "")));
  if (!ver) {
    host.append(h("div.empty", {}, "The export ran without verification."));
    return;
  }
  for (const out of ver.outputs || []) {
    const sample = out.sample || {};
    host.append(h("section.vout", {},
      h("h4", {}, "output ", h("span.mono", {}, out.name), " ", status(out.status),
        h("span.muted", {}, ` max abs ${fmt(out.max_abs)} · max rel ${fmt(out.max_rel)} · mean abs ${fmt(out.mean_abs)}`)),
      h("div.charts", {},
        sample.original && sample.keras ? overlayChart(sample.original, sample.keras) : null,
        sample.original && sample.keras ? scatterChart(sample.original, sample.keras) : null,
        out.error_histogram ? histogramChart(out.error_histogram) : null)));
  }
  const rows = (ver.layers || []).map((l) => {
    const nodes = layerNodes.get(l.layer) || [];
    const cls = classes.get(l.layer);
    const worst = [l.isolated?.status, l.cumulative?.status].includes("FAILED") ? "FAILED"
      : [l.isolated?.status, l.cumulative?.status].includes("INACCURATE") ? "INACCURATE" : "OK";
    return h("tr.st-" + worst, { onclick: () => nodes.length && onNode(nodes[nodes.length - 1]), title: nodes.join("\n") },
      h("td.mono", {}, l.layer), h("td", {}, cls ? cls.keras_class + (cls.standard ? "" : " (custom)") : ""),
      ...errCells(l.isolated), ...errCells(l.cumulative));
  });
  host.append(h("section", {}, h("h4", {}, "Layers (click a row to see it on the graph)"),
    h("table.vtab", {},
      h("thead", {},
        h("tr", {}, h("th", { rowSpan: 2 }, "layer"), h("th", { rowSpan: 2 }, "class"), h("th", { colSpan: 4 }, "isolated"), h("th", { colSpan: 4 }, "cumulative")),
        h("tr", {}, ...["max abs", "max rel", "mean abs", "status", "max abs", "max rel", "mean abs", "status"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))));
  if ((ver.gradients || []).length) {
    host.append(h("section", {}, h("h4", {}, "Gradients"),
      h("table.vtab", {},
        h("thead", {}, h("tr", {}, ...["variable", "max abs", "max rel", "mean abs", "status"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ver.gradients.map((g) => h("tr.st-" + g.status, {}, h("td.mono", {}, g.variable), ...errCells(g)))))));
  }
  const sw = conv.standard_weights || {}, cw = conv.custom_weights || {};
  host.append(h("div.muted", {}, `standard weights ${fmtInt(sw.count)} (${fmtInt(sw.params)} params) · custom weights ${fmtInt(cw.count)} (${fmtInt(cw.params)} params)`));
}

// report.verification.passed, or (when absent) every layer and output OK.
export function passed(ver) {
  if (typeof ver.passed === "boolean") return ver.passed;
  const sts = [...(ver.outputs || []).map((o) => o.status),
    ...(ver.layers || []).flatMap((l) => [l.isolated?.status, l.cumulative?.status])];
  return sts.every((s) => s === "OK" || s == null);
}

// node name -> "INACCURATE" | "FAILED" for layers that diverge.
export function divergingNodes(report) {
  const out = new Map();
  const ver = report && report.verification;
  if (!ver) return out;
  const layerNodes = new Map(((report.conversion || {}).layers || []).map((l) => [l.layer, l.tf_nodes || []]));
  for (const l of ver.layers || []) {
    const sts = [l.isolated?.status, l.cumulative?.status];
    const st = sts.includes("FAILED") ? "FAILED" : sts.includes("INACCURATE") ? "INACCURATE" : null;
    if (!st) continue;
    for (const n of layerNodes.get(l.layer) || []) out.set(n, st);
  }
  return out;
}
