"""Peer comparison (heavy): the same frozen graph through tf2onnx + onnx2tf vs tb-varmap.

tb_varmap side (this process, Python 3.11): `tb-varmap export --json` wall time, the
frozen original (bench/speed.frozen_graph) run by a Session on seeded inputs, the
exported model's max abs error, share of params in standard Keras layers, trainable
params. Peer side (bench/peers_child.py in the venv --venv, Python 3.12: onnx2tf 2.x needs
it): tf2onnx --graphdef, onnx2tf -okv3, then the Keras file is loaded and run.
Failures are recorded with their messages.

  python -m venv … /tmp/peers312; /tmp/peers312/bin/pip install tensorflow==2.21.0 tf2onnx onnx2tf onnx onnxruntime onnx-graphsurgeon sng4onnx
  python -m bench.peers [--models conv_bias,cnn_bn_adam,...] [--venv /tmp/peers312]
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from bench import common
from bench.fidelity import run_cli

MODELS = "dense_nobias,conv_bias,custom_sigmoid,cnn_bn_adam,mlp_estimator_style,legacy_lstm,legacy_gru,legacy_slim_cnn"


def ours(logdir, run, work):
    """Export with tb-varmap, then compare the model with the frozen original."""
    import keras

    import tb_varmap  # noqa: F401
    from bench import speed
    from tb_varmap import export_run, verify
    from tb_varmap import run as run_mod
    from tb_varmap import tags as tags_mod

    model_path = os.path.join(work, run + ".keras")
    rc, out, lines, stats = run_cli(["export", "--logdir", logdir, "--run", run, "--json", "--out", model_path], 1800)
    row = {"ours_wall_s": stats["wall_s"], "ours_exit": rc}
    if rc:
        row["ours_error"] = lines[-1][1] if lines else "exit %d" % rc
    report = json.loads(out) if rc == 0 else {}
    conv = report.get("conversion", {})
    std, cust = (conv.get("standard_weights") or {}).get("params"), (conv.get("custom_weights") or {}).get("params")
    row.update(ours_standard_params=std, ours_custom_params=cust)
    run_data = run_mod.RunData(logdir, run)
    tags = tags_mod.load_tags(run_data.run_dir)
    inputs, outputs = export_run.choose_io(run_data, tags)
    bindings, _ = export_run.variable_bindings(run_data, run_data.latest_step, tags)
    row["trainable_params_original"] = int(sum(np.size(b.value) for b in bindings if b.trainable))
    parts = speed.partition_values(run_data, run_data.latest_step)
    frozen = speed.frozen_graph(run_data.graph_def, outputs, bindings, parts)
    feed = verify.make_inputs(run_data.graph_def.SerializeToString(), inputs, bindings, seed=0, batch=4)
    session, fetch, tensor = speed.frozen_session(run_data.graph_def, outputs, bindings, parts)
    expected = session.run(fetch, {tensor(k): v for k, v in feed.items()})
    if rc == 0:
        model = keras.saving.load_model(model_path)
        x = [feed[n.split(":")[0]] for n in inputs]
        got = model.predict_on_batch(x[0] if len(x) == 1 else x)
        got = got if isinstance(got, (list, tuple)) else [got]
        row["ours_max_abs"] = max(float(np.max(np.abs(np.asarray(g) - e))) for g, e in zip(got, expected))
        row["ours_trainable_params"] = int(sum(np.size(w.numpy()) for w in model.trainable_weights))
    paths = {"frozen": os.path.join(work, run + ".pb"), "inputs": os.path.join(work, run + "_in.npz"),
             "expected": os.path.join(work, run + "_out.npz")}
    with open(paths["frozen"], "wb") as f:
        f.write(frozen.SerializeToString())
    np.savez(paths["inputs"], **feed)
    np.savez(paths["expected"], **{"out_%d" % i: v for i, v in enumerate(expected)})
    return row, inputs, outputs, paths


def peer(venv, inputs, outputs, paths, work):
    cmd = [os.path.join(venv, "bin", "python"), os.path.join(common.REPO, "bench", "peers_child.py"),
           "--frozen", paths["frozen"], "--inputs-npz", paths["inputs"], "--expected", paths["expected"],
           "--work", work]
    for i in inputs:
        cmd += ["--input", i if ":" in i else i + ":0"]
    for o in outputs:
        cmd += ["--output", o]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=3600)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = proc.stderr.strip().splitlines()
        return {"error": "peers_child exit %d: %s" % (proc.returncode, tail[-1] if tail else "")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--venv", default="/tmp/peers312")
    ap.add_argument("--smoke", action="store_true", help="dense_nobias only")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    from tb_varmap.demo.generate import generate

    models = ["dense_nobias"] if args.smoke else args.models.split(",")
    work = tempfile.mkdtemp(prefix="bench_peers_")
    rows = []
    try:
        logdir = os.path.join(work, "demo")
        generate(logdir, models=models, variants=("ref",))
        for run in models:
            run_work = os.path.join(work, "w_" + run)
            os.makedirs(run_work)
            try:
                row, inputs, outputs, paths = ours(logdir, run, run_work)
            except Exception as e:  # noqa: BLE001
                rows.append({"run": run, "ours_error": "%s: %s" % (type(e).__name__, str(e)[:300])})
                continue
            if os.path.exists(os.path.join(args.venv, "bin", "python")):
                row.update({"peer_" + k: v for k, v in peer(args.venv, inputs, outputs, paths, run_work).items()})
            else:
                row["peer_error"] = "no venv at %s" % args.venv
            t = (row.get("peer_tf2onnx_s") or 0) + (row.get("peer_onnx2tf_s") or 0)
            row["wall_ratio_peer_over_ours"] = t / row["ours_wall_s"] if t and row.get("ours_wall_s") else None
            rows.append(dict(run=run, **row))
            print(run, {k: v for k, v in rows[-1].items() if k != "peer_layer_classes"}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("wrote", common.save(args.out, "peers" + ("_smoke" if args.smoke else ""), {"runs": rows}))
    return rows


if __name__ == "__main__":
    main()
