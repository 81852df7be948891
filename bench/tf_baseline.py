"""What TF alone needs for a TF1 model_dir: import the graph, restore the checkpoint, run one batch.

  python -m bench.tf_baseline --model-dir DIR --input x:0 --output probs:0 [--batch 2]
Prints one JSON line: seconds for TF's import, import_meta_graph, restore, first and
second session.run, and the process's peak RSS.
"""
import argparse
import glob
import json
import os
import resource
import time

T0 = time.perf_counter()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--input", default="x:0")
    ap.add_argument("--output", default="probs:0")
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    t = {"tf_import_s": time.perf_counter() - T0}
    v1 = tf.compat.v1
    prefix = v1.train.latest_checkpoint(args.model_dir)
    meta = prefix + ".meta" if os.path.exists(prefix + ".meta") else glob.glob(os.path.join(args.model_dir, "*.meta"))[0]
    graph = tf.Graph()
    with graph.as_default():
        start = time.perf_counter()
        saver = v1.train.import_meta_graph(meta, clear_devices=True)
        t["import_graph_s"] = time.perf_counter() - start
        with v1.Session(graph=graph) as sess:
            start = time.perf_counter()
            saver.restore(sess, prefix)
            t["restore_s"] = time.perf_counter() - start
            x = graph.get_tensor_by_name(args.input)
            shape = [args.batch if d is None else d for d in x.shape.as_list()]
            feed = {x: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
            out = graph.get_tensor_by_name(args.output)
            start = time.perf_counter()
            sess.run(out, feed)
            t["first_run_s"] = time.perf_counter() - start
            start = time.perf_counter()
            sess.run(out, feed)
            t["second_run_s"] = time.perf_counter() - start
    t["work_s"] = t["import_graph_s"] + t["restore_s"] + t["first_run_s"]
    t["process_s"] = time.perf_counter() - T0
    t["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(t))


if __name__ == "__main__":
    main()
