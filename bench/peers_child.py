"""(runs in the peers venv, Python 3.12, never imports tb_varmap) tf2onnx → onnx2tf on one
frozen graph, then the result is loaded and run on the same inputs.

  /tmp/peers312/bin/python bench/peers_child.py --frozen F.pb --inputs-npz I.npz --expected E.npz \
      --input x:0 --output y:0 --work DIR
Prints one JSON line.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time


def _run(cmd, timeout=1800):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    errors = [l for l in tail if "Error" in l or "error" in l]
    return time.perf_counter() - start, proc.returncode, (errors or tail or [""])[-1][:400]


def _keras_stats(model):
    """(params in standard keras layers, in other layers, trainable params, layer classes)."""
    standard = other = 0
    classes = {}
    for layer in model.layers:
        n = sum(int(w.numpy().size) for w in layer.weights)
        module = type(layer).__module__
        std = module.startswith(("keras.", "tf_keras.")) and type(layer).__name__ not in ("Lambda", "TFOpLambda", "TFSMLayer")
        classes[type(layer).__name__] = classes.get(type(layer).__name__, 0) + 1
        if std:
            standard += n
        else:
            other += n
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return standard, other, trainable, classes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frozen", required=True)
    ap.add_argument("--inputs-npz", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--input", action="append", required=True)
    ap.add_argument("--output", action="append", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    row = {}
    onnx_path = os.path.join(args.work, "model.onnx")
    row["tf2onnx_s"], rc, msg = _run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", args.frozen,
                                      "--inputs", ",".join(args.input), "--outputs", ",".join(args.output),
                                      "--output", onnx_path, "--opset", "17"])
    if rc or not os.path.exists(onnx_path):
        row["error"] = "tf2onnx: " + msg
        return row
    import numpy as np

    feed = dict(np.load(args.inputs_npz))
    expected = [np.load(args.expected)["out_%d" % i] for i in range(len(args.output))]
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {i.name: feed[i.name.split(":")[0]] for i in sess.get_inputs()})
        row["onnx_max_abs"] = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
    except Exception as e:  # noqa: BLE001
        row["onnx_error"] = "%s: %s" % (type(e).__name__, str(e)[:300])
    out_dir = os.path.join(args.work, "onnx2tf")
    row["onnx2tf_s"], rc, msg = _run([os.path.join(os.path.dirname(sys.executable), "onnx2tf"), "-i", onnx_path, "-o", out_dir, "-okv3",
                                      # keep the inputs' NHWC layout (ONNX names keep ":0")
                                      "-kat", *args.input])
    models = glob.glob(os.path.join(out_dir, "*.keras"))
    if rc or not models:
        row["error"] = "onnx2tf (exit %s): %s" % (rc, msg)
        row["onnx2tf_files"] = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []
        return row
    try:
        import keras

        try:
            model = keras.saving.load_model(models[0], safe_mode=False)
            row["loads_with"] = "keras 3"
        except Exception as e:  # noqa: BLE001  onnx2tf writes tf_keras (Keras 2) files
            row["keras3_load_error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
            import tf_keras

            try:
                model = tf_keras.models.load_model(models[0], safe_mode=False)
                row["loads_with"] = "tf_keras"
            except Exception as e2:  # noqa: BLE001  its bridge layer is registered lazily
                row["tf_keras_load_error"] = "%s: %s" % (type(e2).__name__, str(e2)[:200])
                from onnx2tf import onnx2tf as o2t

                o2t._get_saved_model_bridge_layer_cls()
                model = tf_keras.models.load_model(models[0], safe_mode=False)
                row["loads_with"] = "tf_keras after onnx2tf's private layer registration"
        x = [feed[i.split(":")[0]] for i in args.input]
        got = model.predict_on_batch(x[0] if len(x) == 1 else x)
        got = got if isinstance(got, (list, tuple)) else [got]
        errs = []
        for g, e in zip(got, expected):
            g = np.asarray(g)
            if g.shape != e.shape and g.ndim == 4:  # NCHW vs NHWC
                g = np.transpose(g, (0, 2, 3, 1)) if g.shape[1] == e.shape[3] else g
            errs.append(float(np.max(np.abs(g.reshape(e.shape) - e))))
        row["keras_max_abs"] = max(errs)
        row["standard_params"], row["other_params"], row["trainable_params"], row["layer_classes"] = \
            _keras_stats(model)
    except Exception as e:  # noqa: BLE001
        row["error"] = "loading/running the onnx2tf Keras model: %s: %s" % (type(e).__name__, " ".join(str(e).split())[-300:])
    return row


if __name__ == "__main__":
    print(json.dumps(main()))
