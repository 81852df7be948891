"""Memory on a big checkpoint (heavy): listing its variables, exporting it.

A TF1 model_dir with an MLP of --layers dense layers of --width × --width floats
(default 4 × 8192² ≈ 1.07 GB checkpoint, ref variables, graph event + Saver
checkpoint) is written to a temp dir (deleted afterwards). Then, each in a fresh child:
  list:   RunData + plugin.variables_impl (what GET /variables does), RSS before and after
          and the peak (VmHWM) from /proc; added = peak − RSS before the listing;
  export: `tb-varmap export --json` and `tb-varmap export --verify --json`, peak RSS (wait4).
Targets: listing adds < 100 MB; export peak < 2.5 × checkpoint size.

  python -m bench.big_checkpoint
  python -m bench.big_checkpoint --smoke --out /tmp/x      # 2 × 256², seconds
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench import common
from bench.fidelity import run_cli

RUN = "big_mlp"


def generate(model_dir, width, layers):
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    os.makedirs(model_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, width], name="x")
        h = x
        for i in range(layers):
            with v1.variable_scope("dense_%d" % i):
                w = v1.get_variable("kernel", [width, width], initializer=v1.zeros_initializer(),
                                    use_resource=False)
                b = v1.get_variable("bias", [width], initializer=v1.zeros_initializer(), use_resource=False)
                h = tf.nn.bias_add(tf.matmul(h, w, name="MatMul"), b, name="BiasAdd")
                if i < layers - 1:
                    h = tf.nn.relu(h, name="Relu")
        tf.identity(h, name="y")
        saver = v1.train.Saver()
        rng = np.random.default_rng(0)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for var in v1.global_variables():  # scaled so activations stay O(1)
                shape = var.shape.as_list()
                value = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[0]))
                var.load(value, sess)
                del value
            writer = v1.summary.FileWriter(model_dir, graph)
            writer.close()
            saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=1)
    with open(os.path.join(model_dir, "checkpoint")) as f:
        text = f.read()
    with open(os.path.join(model_dir, "checkpoint"), "w") as f:
        f.write(text.replace(os.path.abspath(model_dir) + os.sep, ""))


def list_child(logdir, run):
    """(in a child) RSS around listing the variables of `run` as GET /variables does."""
    import tensorflow  # noqa: F401  (TF is loaded by the plugin process anyway)

    from tb_varmap import plugin
    from tb_varmap import run as run_mod

    before_data = common.rss_mib(os.getpid())[0]
    data = run_mod.RunData(logdir, run)
    _ = data.graph_def, data.checkpoint_steps
    before = common.rss_mib(os.getpid())[0]
    result = plugin.variables_impl(data, None)
    after, peak = common.rss_mib(os.getpid())
    return {"rss_before_rundata_mib": before_data, "rss_before_mib": before, "rss_after_mib": after,
            "peak_mib": peak, "added_mib": peak - before, "added_after_mib": after - before,
            "variables": len(result["variables"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--child-generate", nargs=3, metavar=("DIR", "WIDTH", "LAYERS"), help=argparse.SUPPRESS)
    ap.add_argument("--child-list", nargs=2, metavar=("LOGDIR", "RUN"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    if args.child_generate:
        generate(args.child_generate[0], int(args.child_generate[1]), int(args.child_generate[2]))
        return None
    if args.child_list:
        print("LIST " + json.dumps(list_child(*args.child_list)))
        return None
    width, layers = (256, 2) if args.smoke else (args.width, args.layers)
    work = tempfile.mkdtemp(prefix="bench_bigckpt_")
    try:
        logdir = os.path.join(work, "logdir")
        model_dir = os.path.join(logdir, RUN)
        _child(["--child-generate", model_dir, str(width), str(layers)])
        ckpt = sum(os.path.getsize(os.path.join(model_dir, f)) for f in os.listdir(model_dir)
                   if f.startswith("model.ckpt-") and ".data-" in f)
        listed = json.loads([l for l in _child(["--child-list", logdir, RUN]).splitlines()
                             if l.startswith("LIST ")][-1][5:])
        result = {"width": width, "layers": layers, "checkpoint_bytes": ckpt,
                  "checkpoint_mib": ckpt / 2**20, "list": listed}
        for name, extra in (("export", []), ("export_verify", ["--verify"])):
            rc, out, lines, stats = run_cli(["export", "--logdir", logdir, "--run", RUN, "--json",
                                             "--out", os.path.join(work, name + ".keras"), *extra], 3600)
            errors = [l for _, l in lines if "%" not in l[:5] and l.strip()]
            result[name] = {"exit": rc, **stats, "peak_over_checkpoint": stats["peak_rss_mib"] / (ckpt / 2**20),
                            "peak_above_start_over_checkpoint":
                                (stats["peak_rss_mib"] - listed["rss_before_rundata_mib"]) / (ckpt / 2**20),
                            "error": errors[-1] if rc not in (0, 1) and errors else None}
            print("   RSS by phase (MiB): %s" % stats["rss_by_phase_mib"])
            print("%s: exit %s, wall %.1fs, peak %.0f MiB = %.2f x checkpoint (%.0f MiB) %s" % (
                name, rc, stats["wall_s"], stats["peak_rss_mib"], result[name]["peak_over_checkpoint"],
                ckpt / 2**20, result[name]["error"] or ""), flush=True)
        print("list: +%.1f MiB peak over %.0f MiB before (%d variables)" % (
            listed["added_mib"], listed["rss_before_mib"], listed["variables"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("wrote", common.save(args.out, "big_checkpoint" + ("_smoke" if args.smoke else ""), result))
    return result


def _child(extra):
    proc = subprocess.run([sys.executable, "-m", "bench.big_checkpoint", *extra], capture_output=True, text=True,
                          env=common.child_env(), cwd=common.REPO, timeout=3600)
    if proc.returncode:
        raise RuntimeError("bench.big_checkpoint %s failed: %s" % (extra[0], proc.stderr[-2000:]))
    return proc.stdout


if __name__ == "__main__":
    main()
