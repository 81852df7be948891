"""The exported model's speed: Keras inference time ÷ original frozen-graph session time.

The original is the run's inference subgraph with every variable read replaced by a
constant holding the checkpoint value (a frozen graph), run by a TF1 Session; the Keras
model is the exported `.keras` file. Same seeded batch (verify.make_inputs) for both;
medians over --repeats calls after 3 warm-up calls. Keras is timed through
`predict_on_batch` (compiled) and a plain eager `model(x)` call; the ratio uses
predict_on_batch. Prints one JSON line.

  python -m bench.speed --logdir L --run R --model M.keras [--batch 32]
"""
import argparse
import json
import sys
import time

import numpy as np


def _median_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def partition_values(run_data, step):
    """{read tensor of one partition: that partition's value} for partitioned variables: the
    checkpoint holds one tensor per partition, or the partitions concatenated along the
    partition axis (Saver slices); the graph's VariableV2/VarHandleOp shapes give the sizes."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(run_data.checkpoint_prefix(step))
    nodes = {n.name: n for n in run_data.graph_def.node}
    out = {}
    for info in run_data.variables(step):
        if len(info.nodes) < 2 or not info.checkpoint_keys:
            continue
        if len(info.checkpoint_keys) == len(info.nodes):
            values = [reader.get_tensor(k) for k in info.checkpoint_keys]
        else:
            full, axis, offset, values = reader.get_tensor(info.checkpoint_keys[0]), info.partition_axis or 0, 0, []
            for node in info.nodes:
                size = nodes[node].attr["shape"].shape.dim[axis].size
                values.append(full.take(range(offset, offset + size), axis=axis))
                offset += size
        for node, value in zip(info.nodes, values):
            for t in info.read_tensors:
                if t.split(":")[0] == node or t.startswith(node + "/"):
                    out[t if ":" in t else t + ":0"] = value
    return out


def frozen_graph(graph_def, outputs, bindings, parts=None):
    """The inference subgraph with every bound variable read replaced by a Const of its
    checkpoint value (a frozen graph, node names kept); a tf.compat.v1 GraphDef.
    `parts` gives the value of each partition's read (partition_values())."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef.FromString(graph_def.SerializeToString())
    out_nodes = sorted({o.split(":")[0] for o in outputs})
    sub = tf.compat.v1.graph_util.extract_sub_graph(gd, out_nodes)
    names = {n.name for n in sub.node}
    for n in sub.node:
        n.device = ""
        if "_class" in n.attr:
            del n.attr["_class"]
    graph = tf.Graph()
    with graph.as_default():
        input_map = {}
        for b in bindings:
            for t in b.read_tensors:
                t = t if ":" in t else t + ":0"
                if t.split(":")[0] in names and not b.value.dtype == object:
                    value = (parts or {}).get(t, b.value)
                    input_map[t] = tf.constant(value, name="frozen/" + t.replace(":", "_"))
        tf.compat.v1.import_graph_def(sub, input_map=input_map, name="")
    return tf.compat.v1.graph_util.extract_sub_graph(graph.as_graph_def(), out_nodes)


def frozen_session(graph_def, outputs, bindings, parts=None):
    """(session, output tensors, input tensor lookup) over frozen_graph()."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen_graph(graph_def, outputs, bindings, parts), name="orig")
    session = tf.compat.v1.Session(graph=graph)
    fetch = [graph.get_tensor_by_name("orig/" + o) for o in outputs]
    return session, fetch, lambda name: graph.get_tensor_by_name("orig/" + name.split(":")[0] + ":0")


def measure(logdir, run, model_path, batch=32, repeats=50, inputs=None, outputs=None, more_batches=()):
    import keras

    import tb_varmap  # noqa: F401  (registers the custom layers)
    from tb_varmap import export_run, verify
    from tb_varmap import run as run_mod
    from tb_varmap import tags as tags_mod

    run_data = run_mod.RunData(logdir, run)
    tags = tags_mod.load_tags(run_data.run_dir)
    inputs, outputs = export_run.choose_io(run_data, tags, inputs, outputs)
    step = run_data.latest_step
    bindings, _ = export_run.variable_bindings(run_data, step, tags)
    graph_bytes = run_data.graph_def.SerializeToString()
    parts = partition_values(run_data, step)
    session, fetch, tensor = frozen_session(run_data.graph_def, outputs, bindings, parts)
    model = keras.saving.load_model(model_path)

    def one(batch):
        feed = verify.make_inputs(graph_bytes, inputs, bindings, seed=0, batch=batch)
        feed_dict = {tensor(k): v for k, v in feed.items()}
        x = [feed[n.split(":")[0]] for n in inputs]
        x = x[0] if len(x) == 1 else x
        graph_s, _ = _median_time(lambda: session.run(fetch, feed_dict), repeats)
        keras_s, _ = _median_time(lambda: model.predict_on_batch(x), repeats)
        eager_s, _ = _median_time(lambda: model(x, training=False), repeats)
        want = session.run(fetch, feed_dict)
        got = model.predict_on_batch(x)
        got = got if isinstance(got, (list, tuple)) else [got]
        diff = max(float(np.max(np.abs(np.asarray(g, dtype=np.float64) - np.asarray(w, dtype=np.float64))))
                   if np.size(w) else 0.0 for g, w in zip(got, want))
        return {"batch": batch, "graph_s": graph_s, "keras_s": keras_s, "keras_eager_s": eager_s,
                "ratio": keras_s / graph_s, "eager_ratio": eager_s / graph_s, "max_abs_diff": diff}

    row = {"run": run, "repeats": repeats, **one(batch), "inputs": inputs, "outputs": outputs}
    row["by_batch"] = [one(b) for b in more_batches]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--run", default=".")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--more-batches", default="512", help="comma list of further batch sizes to time")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    batch, repeats = (2, 3) if args.smoke else (args.batch, args.repeats)
    try:
        more = [] if args.smoke else [int(b) for b in args.more_batches.split(",") if b]
        row = measure(args.logdir, args.run, args.model, batch, repeats, more_batches=more)
    except Exception as e:  # one JSON line either way, the caller records the failure
        row = {"run": args.run, "error": "%s: %s" % (type(e).__name__, str(e)[:500])}
    print(json.dumps(row))
    return 0 if "error" not in row else 1


if __name__ == "__main__":
    sys.exit(main())
