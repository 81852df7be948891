"""Export overhead on a ResNet-50-sized model (heavy; not in --smoke of run_all).

tf_slim resnet_v1_50 with random weights (bench/resnet_model.py, generated in a
TF_USE_LEGACY_KERAS=1 subprocess), then, alternating, --repeats times each:
  `tb-varmap export --verify --json` in a child (wall, startup, export, verify, peak RSS), and
  bench/tf_baseline.py in a child (import_meta_graph + restore + one batch of 2).
Ratios: child wall ÷ child wall (both pay TF's import), and work ÷ work (export + verify
without start-up ÷ import + restore + first run). Medians over repeats.

  python -m bench.export_overhead [--repeats 3] [--profile]
  python -m bench.export_overhead --smoke --out /tmp/x    # 32x32 input instead of 224x224
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench import common
from bench.fidelity import export_one

TARGET = 2.0


def generate(out_dir, size):
    env = common.child_env(TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.resnet_model", "--out", out_dir, "--size", str(size)],
                          capture_output=True, text=True, env=env, cwd=common.REPO, timeout=1200)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESNET ")]
    if proc.returncode or not line:
        raise RuntimeError("resnet_model failed (exit %d): %s" % (proc.returncode, proc.stderr[-2000:]))
    return json.loads(line[-1][len("RESNET "):])


def baseline(model_dir):
    proc = subprocess.run([sys.executable, "-m", "bench.tf_baseline", "--model-dir", model_dir],
                          capture_output=True, text=True, env=common.child_env(), cwd=common.REPO, timeout=1200)
    if proc.returncode:
        raise RuntimeError("tf_baseline failed: " + proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile_export(logdir, run, model_path):
    """cProfile of export_run.export(verify=True) in this process: top functions."""
    from tb_varmap import export_run

    return common.profile_call(lambda: export_run.export(logdir, run, verify=True, out=model_path), top=40)[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--profile", action="store_true", help="also cProfile one export in-process")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--keep", help="keep the generated model_dir here")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    size, repeats = (32, 1) if args.smoke else (args.size, args.repeats)
    work = tempfile.mkdtemp(prefix="bench_resnet_")
    try:
        logdir = os.path.join(work, "logdir")
        model_dir = args.keep or os.path.join(logdir, "resnet_v1_50")
        run = "resnet_v1_50"
        if args.keep and os.path.exists(os.path.join(model_dir, "checkpoint")):
            info = {"params": None, "nodes": None, "reused": model_dir}
        else:
            info = generate(model_dir, size)
        if args.keep:  # runs are directories of the logdir (symlinks are not followed)
            shutil.copytree(model_dir, os.path.join(logdir, run))
            model_dir = os.path.join(logdir, run)
        ckpt_bytes = sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)
                         if f.startswith("model.ckpt-") and ".data-" in f)
        exports, baselines = [], []
        for i in range(repeats):
            row = export_one(logdir, run, os.path.join(work, "model.keras"), 3600)
            exports.append(row)
            baselines.append(baseline(model_dir))
            print("export+verify wall %.1fs (startup %.1f export %s verify %s, rss %.0f MiB, exit %s %s) | "
                  "TF wall %.1fs work %.1fs" % (row["wall_s"], row.get("startup_s") or 0, row.get("export_s"),
                                               row.get("verify_s"), row["peak_rss_mib"], row["exit"],
                                               row.get("error", "")[:200], baselines[-1]["process_s"],
                                               baselines[-1]["work_s"]), flush=True)
        med = lambda rows, k: common.median([r.get(k) for r in rows])  # noqa: E731
        work_export = common.median([(r.get("export_s") or 0) + (r.get("verify_s") or 0) for r in exports
                                     if r.get("export_s") is not None])
        result = {
            "model": info, "input_size": size, "checkpoint_bytes": ckpt_bytes, "repeats": repeats,
            "export": {k: med(exports, k) for k in ("wall_s", "startup_s", "export_s", "verify_s", "peak_rss_mib")},
            "baseline": {k: med(baselines, k) for k in baselines[0]},
            "exports": exports, "baselines": baselines, "target": TARGET,
        }
        result["ratio_wall"] = result["export"]["wall_s"] / result["baseline"]["process_s"]
        result["ratio_work"] = (work_export / result["baseline"]["work_s"]) if work_export else None
        if args.profile:
            result["profile_top"] = profile_export(logdir, run, os.path.join(work, "model_prof.keras"))
        print("ratio wall %.2f, work %s (target <= %.1f)" % (result["ratio_wall"], result["ratio_work"], TARGET))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("wrote", common.save(args.out, "export_overhead" + ("_smoke" if args.smoke else ""), result))
    return result


if __name__ == "__main__":
    main()
