"""Graph API at scale: /data/plugin/varmap/graph vs TensorBoard's own graphs route.

For each size a synthetic TF1 training graph (bench/synth_graph.py) is logged as a graph
event into its own logdir; for each repeat a fresh `tensorboard` process is started, and
once TensorBoard lists the run's graph:
  varmap cold (first request), varmap warm (median of --warm requests),
  graphs cold, graphs warm (`/data/plugin/graphs/graph?run=R&conversions=false`),
  bytes on the wire (gzip accepted) and decoded, RSS of the server (python process, and
  with its data-server child) after loading, after the varmap route, after the graphs route.
Figures are medians over --repeats processes.

  python -m bench.graph_api                 # 1k, 10k, 100k nodes, 3 repeats
  python -m bench.graph_api --smoke --out /tmp/x
"""
import argparse
import json
import os
import shutil
import tempfile
import time

from bench import common, synth_graph
from bench.tbserver import tensorboard

RUN = "train"
TARGETS = {"cold_s": 1.0, "warm_s": 0.05, "wire_mb": 2.0}


def _graph_listed(tb):
    info = tb.json("/data/plugin/graphs/info")
    return bool(info.get(RUN, {}).get("run_graph"))


def _varmap_active(tb):
    return tb.json("/data/plugins_listing").get("varmap", {}).get("enabled")


def _route(tb, path, warm):
    cold, raw, body, encoding = tb.get(path)
    times = [tb.get(path)[0] for _ in range(warm)]
    return {"cold_s": cold, "warm_s": common.median(times), "warm_all_s": times,
            "wire_bytes": len(raw), "decoded_bytes": len(body), "encoding": encoding}, body


def measure_once(logdir, nodes, warm, work):
    with tensorboard(logdir, log_dir=work) as tb:
        start = time.perf_counter()
        tb.wait_for(_graph_listed, "graph of run %r in /data/plugin/graphs/info" % RUN)
        tb.wait_for(_varmap_active, "active varmap plugin")
        loaded_s = time.perf_counter() - start
        rss = {"loaded": common.rss_mib(tb.pid)[0], "loaded_tree": common.tree_rss_mib(tb.pid)}
        try:
            ours, body = _route(tb, "/data/plugin/varmap/graph?run=" + RUN, warm)
            data = json.loads(body)
            ours["node_count"] = data.get("node_count")
            ours["nodes_listed"] = len(data.get("nodes", []))
            ours["scopes"] = len(data.get("scopes", []))
            ours["ok"] = ours["nodes_listed"] == nodes
        except Exception as e:  # record the failure, still measure TensorBoard's route
            ours = {"error": "%s: %s" % (type(e).__name__, getattr(e, "read", lambda: b"")()[:500] or e)}
        rss["after_varmap"] = common.rss_mib(tb.pid)[0]
        theirs, _ = _route(tb, "/data/plugin/graphs/graph?run=%s&conversions=false" % RUN, warm)
        rss["after_graphs"] = common.rss_mib(tb.pid)[0]
        rss["peak"] = common.rss_mib(tb.pid)[1]
        rss["after_graphs_tree"] = common.tree_rss_mib(tb.pid)
    return {"loaded_s": loaded_s, "varmap": ours, "graphs": theirs, "rss_mib": rss}


def summarize(runs):
    """Medians over repeats of every numeric leaf."""
    def med(path):
        values = []
        for r in runs:
            v = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values.append(v)
        return common.median(values)

    out = {"loaded_s": med(["loaded_s"])}
    for route in ("varmap", "graphs"):
        out[route] = {k: med([route, k]) for k in ("cold_s", "warm_s", "wire_bytes", "decoded_bytes")}
        errors = [r[route]["error"] for r in runs if "error" in r[route]]
        if errors:
            out[route]["error"] = errors[0]
    out["varmap"]["ok"] = all(r["varmap"].get("ok") for r in runs)
    out["rss_mib"] = {k: med(["rss_mib", k]) for k in runs[0]["rss_mib"]}
    return out


def profile_payload(logdir):
    """What the cold /graph request spends its time on: RunCache.graph_payload under cProfile."""
    from tb_varmap import runcache

    cache = runcache.RunCache(logdir)
    start = time.perf_counter()
    _, rows = common.profile_call(lambda: cache.graph_payload(RUN), top=30)
    return {"total_s_profiled": time.perf_counter() - start, "top": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="one tiny graph, one process")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile building the /graph payload in-process (largest size)")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",")]
    repeats, warm = (1, 2) if args.smoke else (args.repeats, args.warm)
    work = tempfile.mkdtemp(prefix="bench_graph_")
    results = []
    try:
        for size in sizes:
            logdir = os.path.join(work, "n%d" % size)
            graph = synth_graph.synth_graph(size)
            synth_graph.write_graph_run(os.path.join(logdir, RUN), graph)
            nodes = len(graph.node)
            runs = [measure_once(logdir, nodes, warm, work) for _ in range(repeats)]
            row = {"target_nodes": size, "nodes": nodes, "graphdef_bytes": graph.ByteSize(),
                   "median": summarize(runs), "runs": runs}
            if args.profile and size == max(sizes):
                row["profile_top"] = profile_payload(logdir)
            results.append(row)
            m = row["median"]
            print("%7d nodes  varmap cold %s warm %s wire %s  |  graphs cold %s warm %s wire %s" % (
                nodes, _fmt(m["varmap"]["cold_s"]), _fmt(m["varmap"]["warm_s"]), _mb(m["varmap"]["wire_bytes"]),
                _fmt(m["graphs"]["cold_s"]), _fmt(m["graphs"]["warm_s"]), _mb(m["graphs"]["wire_bytes"])),
                flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = common.save(args.out, "graph_api" + ("_smoke" if args.smoke else ""),
                       {"sizes": results, "repeats": repeats, "warm": warm, "targets": TARGETS})
    print("wrote", path)
    return results


def _fmt(s):
    return "—" if s is None else "%.3f s" % s


def _mb(b):
    return "—" if b is None else "%.2f MB" % (b / 1e6)


if __name__ == "__main__":
    main()
