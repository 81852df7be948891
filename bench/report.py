"""Markdown tables from bench/results/*.json (pasted into BENCHMARKS.md with the analysis).

  python -m bench.report [--results bench/results]
"""
import argparse
import json
import os

from bench import common


def _load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _n(x, fmt="%.3f"):
    return "—" if x is None else fmt % x


def _e(x):
    return "—" if x is None else ("0" if x == 0 else "%.1e" % x)


def _head(d):
    return ["", "`%s`  " % d["command"], "Machine: %s. Finished %s at commit %s, load average at the end %s."
            % (d["machine"], d["finished"], d.get("revision") or "(not recorded)",
               ", ".join("%.1f" % x for x in d.get("loadavg_at_end", []))), ""]


def graph_api(d):
    out = _head(d) + [
        "| nodes | GraphDef | route | cold | warm (median of %d) | on the wire (gzip) | decoded |" % d["warm"],
        "|---:|---:|---|---:|---:|---:|---:|"]
    for row in d["sizes"]:
        m = row["median"]
        for route, label in (("varmap", "varmap `/graph`"), ("graphs", "TensorBoard graphs (`conversions=false`)")):
            r = m[route]
            out.append("| %d | %.1f MB | %s | %s s | %s s | %s MB | %s MB |" % (
                row["nodes"], row["graphdef_bytes"] / 1e6, label, _n(r["cold_s"], "%.3f"), _n(r["warm_s"], "%.4f"),
                _n(r["wire_bytes"] and r["wire_bytes"] / 1e6, "%.2f"), _n(r["decoded_bytes"] and r["decoded_bytes"] / 1e6, "%.2f")))
    out += ["", "| nodes | RSS loaded | after varmap | after graphs | peak (VmHWM) | with data server |",
            "|---:|---:|---:|---:|---:|---:|"]
    for row in d["sizes"]:
        r = row["median"]["rss_mib"]
        out.append("| %d | %s | %s | %s | %s | %s |" % (row["nodes"], *(_n(r.get(k), "%.0f MiB") for k in (
            "loaded", "after_varmap", "after_graphs", "peak", "after_graphs_tree"))))
    prof = [row for row in d["sizes"] if row.get("profile_top")]
    for row in prof:
        p = row["profile_top"]
        out += ["", "cProfile of the cold payload build at %d nodes (in-process, %.1f s under the profiler):"
                % (row["nodes"], p["total_s_profiled"]), "", "| function | cumulative | own | calls |",
                "|---|---:|---:|---:|"]
        out += ["| `%s` | %.2f s | %.2f s | %d |" % (r["function"], r["cumulative_s"], r["own_s"], r["calls"])
                for r in p["top"][:18]]
    return out


def fidelity(d, speed):
    by_run = {r["run"]: r for r in (speed or {}).get("runs", [])}
    out = _head(d) + [
        "| run | exit | isolated abs / rel | cumulative abs / rel | gradients abs / rel | outputs abs / rel "
        "| export | verify | start-up | longest phase | peak RSS | speed ratio | error |",
        "|---|---:|---|---|---|---|---:|---:|---:|---|---:|---:|---|"]
    for r in d["runs"]:
        s = by_run.get(r["run"], {})
        phases = r.get("phases_s") or {}
        longest = max(phases.items(), key=lambda kv: kv[1]) if phases else None
        out.append("| %s%s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |" % (
            "" if r["logdir"] == "demo" else "real/", r["run"], r["exit"],
            _e(r.get("isolated_max_abs")), _e(r.get("isolated_max_rel")),
            _e(r.get("cumulative_max_abs")), _e(r.get("cumulative_max_rel")),
            _e(r.get("gradients_max_abs")), _e(r.get("gradients_max_rel")),
            _e(r.get("outputs_max_abs")), _e(r.get("outputs_max_rel")),
            _n(r.get("export_s"), "%.1f s"), _n(r.get("verify_s"), "%.1f s"), _n(r.get("startup_s"), "%.1f s"),
            "%s %.1f s" % longest if longest else "—",
            _n(r.get("peak_rss_mib"), "%.0f MiB"), _n(s.get("ratio"), "%.2f"),
            (r.get("error") or s.get("error") or "").replace("|", "\\|")[:160]))
    return out


def speed(d):
    out = _head(d) + ["| run | batch | frozen graph (Session) | Keras predict_on_batch | ratio | Keras eager call "
                      "| eager ratio | max abs diff | error |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = []
    for r in d["runs"]:
        rows.append(r)
        rows += [dict(b, run=r["run"]) for b in r.get("by_batch", [])]
    for r in rows:
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["run"], r.get("batch", "—"), _n(r.get("graph_s") and r["graph_s"] * 1e3, "%.2f ms"),
            _n(r.get("keras_s") and r["keras_s"] * 1e3, "%.2f ms"), _n(r.get("ratio"), "%.2f"),
            _n(r.get("keras_eager_s") and r["keras_eager_s"] * 1e3, "%.2f ms"), _n(r.get("eager_ratio"), "%.2f"),
            _e(r.get("max_abs_diff")), (r.get("error") or "").replace("|", "\\|")[:160]))
    return out


def panel(d):
    out = _head(d) + ["| nodes | tab | first opening (server cold) | median of later openings | JS heap "
                      "| heap after GC | shell alone | drawn items | errors |",
                      "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in d["sizes"]:
        for tab in ("varmap", "graphs"):
            r = row[tab]
            out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["nodes"], tab, _n(r["first_s"], "%.2f s"), _n(r["median_s"], "%.2f s"),
                _n(r["heap_mib"], "%.0f MiB"), _n(r["heap_after_gc_mib"], "%.0f MiB"),
                _n(r["shell_heap_mib"], "%.0f MiB"), r.get("drawn_items", "—"),
                "; ".join(r["errors"])[:200].replace("|", "\\|")))
    return out


def peers(d):
    out = _head(d) + ["| run | tb-varmap export | tf2onnx + onnx2tf | ratio peer ÷ ours | max abs: ours / ONNX / onnx2tf "
                      "| params in standard Keras layers: ours / onnx2tf | trainable kept: original / ours / onnx2tf "
                      "| onnx2tf model loads with | peer error |",
                      "|---|---:|---:|---:|---|---|---|---|---|"]
    for r in d["runs"]:
        peer_s = (r.get("peer_tf2onnx_s") or 0) + (r.get("peer_onnx2tf_s") or 0)
        out.append("| %s | %s | %s | %s | %s / %s / %s | %s / %s | %s / %s / %s | %s | %s |" % (
            r["run"], _n(r.get("ours_wall_s"), "%.1f s"), _n(peer_s or None, "%.1f s"),
            _n(r.get("wall_ratio_peer_over_ours"), "%.2f"), _e(r.get("ours_max_abs")), _e(r.get("peer_onnx_max_abs")),
            _e(r.get("peer_keras_max_abs")), _std(r.get("ours_standard_params"), r.get("ours_custom_params")),
            _std(r.get("peer_standard_params"), r.get("peer_other_params")), r.get("trainable_params_original", "—"),
            r.get("ours_trainable_params", "—"), r.get("peer_trainable_params", "—"), r.get("peer_loads_with", "—"),
            (r.get("peer_error") or r.get("ours_error") or "").replace("|", "\\|").replace("\n", " ")[:200]))
    return out


def _std(standard, other):
    if standard is None:
        return "—"
    total = standard + (other or 0)
    return "%d of %d" % (standard, total)


def export_overhead(d):
    e, b = d["export"], d["baseline"]
    out = _head(d) + [
        "Model: tf_slim resnet_v1_50, %s trainable params, %s nodes, input %d×%d, checkpoint %.0f MB; "
        "medians of %d." % (d["model"].get("params"), d["model"].get("nodes"), d["input_size"], d["input_size"],
                            d["checkpoint_bytes"] / 1e6, d["repeats"]), "",
        "| | wall (child) | start-up | work | peak RSS |", "|---|---:|---:|---:|---:|",
        "| `tb-varmap export --verify` | %s | %s | export %s + verify %s | %s |" % (
            _n(e["wall_s"], "%.1f s"), _n(e["startup_s"], "%.1f s"), _n(e["export_s"], "%.1f s"),
            _n(e["verify_s"], "%.1f s"), _n(e["peak_rss_mib"], "%.0f MiB")),
        "| TF: import_meta_graph + restore + 1 batch | %s | %s | %s (import %s, restore %s, run %s) | %s |" % (
            _n(b["process_s"], "%.1f s"), _n(b["tf_import_s"], "%.1f s"), _n(b["work_s"], "%.1f s"),
            _n(b["import_graph_s"], "%.2f s"), _n(b["restore_s"], "%.2f s"), _n(b["first_run_s"], "%.2f s"),
            _n(b["peak_rss_mib"], "%.0f MiB")),
        "", "Ratio: wall %s, work %s (target ≤ %.1f)." % (_n(d["ratio_wall"], "%.2f"), _n(d["ratio_work"], "%.2f"),
                                                         d["target"])]
    if d.get("profile_top"):
        out += ["", "| function | cumulative | own | calls |", "|---|---:|---:|---:|"]
        out += ["| `%s` | %.2f s | %.2f s | %d |" % (r["function"], r["cumulative_s"], r["own_s"], r["calls"])
                for r in d["profile_top"][:20]]
    return out


def big_checkpoint(d):
    lst = d["list"]
    out = _head(d) + ["Checkpoint: %d × dense %d×%d, %.0f MiB." % (d["layers"], d["width"], d["width"],
                                                                d["checkpoint_mib"]), "",
                      "| step | peak RSS | relative | exit | error |", "|---|---:|---:|---:|---|",
                      "| list variables (RunData + variables_impl) | +%.1f MiB over %.0f MiB | — | 0 | |" % (
                          lst["added_mib"], lst["rss_before_mib"])]
    for name in ("export", "export_verify"):
        r = d[name]
        out.append("| `tb-varmap export%s` | %.0f MiB | %.2f × checkpoint (%s above an idle TF+Keras process) | %s | %s |" % (
            " --verify" if name.endswith("verify") else "", r["peak_rss_mib"], r["peak_over_checkpoint"],
            _n(r.get("peak_above_start_over_checkpoint"), "%.2f ×"), r["exit"], r.get("error") or ""))
        if r.get("rss_by_phase_mib"):
            out.append("|   RSS by phase | %s | | | |" % ", ".join("%s %.0f" % kv for kv in r["rss_by_phase_mib"].items()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    sections = [("Graph API, payloads prewarmed at start-up", "graph_api_prewarm", graph_api),
                ("Graph API", "graph_api", graph_api),
                ("Graph API before the crowded-level grouping, with a profile", "graph_api_profiled", graph_api),
                ("Panel", "panel", panel),
                ("Panel, 100k nodes, before the crowded-level grouping", "panel_100k", panel),
                ("Exported model speed", "speed", speed), ("Export overhead", "export_overhead", export_overhead),
                ("Big checkpoint", "big_checkpoint", big_checkpoint), ("Peers", "peers_8models", peers),
                ("Peers (re-run after the partition fix)", "peers", peers)]
    for title, name, fn in sections:
        d = _load(args.results, name)
        if d:
            print("### " + title)
            print("\n".join(fn(d)) + "\n")
    d = _load(args.results, "fidelity")
    if d:
        print("### Fidelity and cost per model")
        print("\n".join(fidelity(d, _load(args.results, "speed"))) + "\n")


if __name__ == "__main__":
    main()
