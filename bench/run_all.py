"""Runs the benchmarks; results go to bench/results/*.json (see bench/README.md).

  python -m bench.run_all                # graph API, panel, fidelity + speed
  python -m bench.run_all --heavy        # ... plus ResNet-50 overhead, 1 GB checkpoint, peers
  python -m bench.run_all --smoke --out /tmp/x   # each light benchmark once, tiny sizes (~1 min)

--smoke shares one TensorBoard between the graph API and panel checks, and times the
exported model in-process, so the suite's smoke test stays near a minute.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from bench import common

LIGHT = [["graph_api", "--profile"], ["panel"], ["fidelity", "--speed"]]
HEAVY = [["export_overhead", "--profile"], ["big_checkpoint"], ["peers"]]


def smoke(out_dir):
    """Each light benchmark once at tiny size; returns {name: result} and writes smoke.json."""
    from bench import fidelity, graph_api, panel, speed, synth_graph
    from bench.tbserver import tensorboard

    work = tempfile.mkdtemp(prefix="bench_smoke_")
    result = {}
    try:
        logdir = os.path.join(work, "graphs")
        graph = synth_graph.synth_graph(300)
        synth_graph.write_graph_run(os.path.join(logdir, graph_api.RUN), graph)
        with tensorboard(logdir, log_dir=work) as tb:
            tb.wait_for(graph_api._graph_listed, "graph of run %r" % graph_api.RUN)
            tb.wait_for(graph_api._varmap_active, "active varmap plugin")
            result["graph_api"] = graph_api.measure_once(logdir, len(graph.node), 2, work)
            if os.path.exists(panel.CHROMIUM):
                result["panel"] = panel.measure(tb.base, 1, 120)
        (demo, runs), = fidelity.prepare(work, smoke=True)
        run = runs[0]
        model = os.path.join(work, run + ".keras")
        result["fidelity"] = fidelity.export_one(demo, run, model, 600)
        result["speed"] = speed.measure(demo, run, model, batch=2, repeats=3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    common.save(out_dir, "smoke", result)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--heavy", action="store_true")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    if args.smoke:
        result = smoke(args.out)
        print("smoke ok:", sorted(result))
        return 0
    failed = []
    for bench in LIGHT + (HEAVY if args.heavy else []):
        print("==>", " ".join(bench), flush=True)
        rc = subprocess.call([sys.executable, "-m", "bench." + bench[0], *bench[1:], "--out", args.out],
                             cwd=common.REPO, env=common.child_env())
        if rc:
            failed.append(bench[0])
    print("failed:" if failed else "all benchmarks ran", " ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
