"""Writes a TF1 model_dir with tf_slim's resnet_v1_50 (random weights, ~25.6 M params).

Run as its own process with TF_USE_LEGACY_KERAS=1 (tf_slim needs tf_keras' legacy layers):
  TF_USE_LEGACY_KERAS=1 python -m bench.resnet_model --out DIR [--size 224]
tf_slim's batch_norm reaches `tf_keras.legacy_tf_layers.normalization` through a lazy
loader in TF, but tf_keras 2.21 ships the module as `tf_keras.src.legacy_tf_layers`:
an alias in sys.modules fixes the import. Moving mean/variance get random values
(a fresh init would make every BN an identity). Writes a graph event, `model.ckpt-1.*`
and the `.meta` (Saver).
"""
import argparse
import importlib
import os
import sys


def alias_legacy_layers():
    import tf_keras  # noqa: F401

    src = importlib.import_module("tf_keras.src.legacy_tf_layers")
    sys.modules.setdefault("tf_keras.legacy_tf_layers", src)
    for name in ("base", "convolutional", "core", "normalization", "pooling", "variable_scope_shim"):
        sys.modules.setdefault("tf_keras.legacy_tf_layers." + name,
                               importlib.import_module("tf_keras.src.legacy_tf_layers." + name))


def build(out_dir, size=224, seed=0):
    import numpy as np
    import tensorflow as tf

    alias_legacy_layers()
    import tf_slim as slim
    from tf_slim.nets import resnet_v1

    v1 = tf.compat.v1
    os.makedirs(out_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        x = v1.placeholder(tf.float32, [None, size, size, 3], name="x")
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            logits, _ = resnet_v1.resnet_v1_50(x, num_classes=1000, is_training=False)
        tf.nn.softmax(v1.squeeze(logits, [1, 2]), name="probs")
        global_step = v1.train.get_or_create_global_step()
        saver = v1.train.Saver()
        rng = np.random.default_rng(seed)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for var in v1.global_variables():
                if var.op.name.endswith("moving_mean"):
                    var.load(rng.normal(0, 0.1, var.shape).astype("float32"), sess)
                elif var.op.name.endswith("moving_variance"):
                    var.load(rng.uniform(0.5, 1.5, var.shape).astype("float32"), sess)
            sess.run(global_step.assign(1))
            writer = v1.summary.FileWriter(out_dir, graph)
            writer.flush()
            writer.close()
            saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=1)
        params = sum(int(np.prod(v.shape)) for v in v1.trainable_variables())
    with open(os.path.join(out_dir, "checkpoint")) as f:
        text = f.read()
    with open(os.path.join(out_dir, "checkpoint"), "w") as f:
        f.write(text.replace(os.path.abspath(out_dir) + os.sep, ""))
    return {"params": params, "nodes": len(graph.as_graph_def().node)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args(argv)
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        sys.exit("run with TF_USE_LEGACY_KERAS=1 (tf_slim needs tf_keras)")
    import json

    print("RESNET " + json.dumps(build(args.out, args.size)))


if __name__ == "__main__":
    main()
