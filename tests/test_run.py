"""RunData and discover_runs over model dirs written by real TensorFlow."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.errors import NotFound, RunNotFound
from tb_varmap.run import RunData, discover_runs

v1 = tf.compat.v1
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_model(model_dir, build, step=1, graph_file=None, writer=True, feed_fn=None):
    """Builds a graph with `build()`, saves a checkpoint at `step`, writes the graph.
    Returns (graph, {tensor name: value} evaluated by TF for feed_fn's feeds)."""
    os.makedirs(model_dir, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        fetches = build()
        saver = v1.train.Saver()
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            results = sess.run(fetches, feed_fn(g) if feed_fn else None) if fetches else None
            saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=step)
        if writer:
            v1.summary.FileWriter(model_dir, g).close()
    if graph_file:
        tf.io.write_graph(g.as_graph_def(), model_dir, graph_file, as_text=graph_file.endswith("txt"))
    return g, results


def _dense():
    x = v1.placeholder(tf.float32, [None, 3], name="x")
    w = v1.get_variable("dense/kernel", [3, 2], use_resource=False)
    tf.identity(tf.matmul(x, w), name="y")
    return None


def _summary_only(path):
    with tf.Graph().as_default():
        w = v1.summary.FileWriter(path)
        w.add_summary(v1.Summary(value=[v1.Summary.Value(tag="loss", simple_value=1.0)]), 1)
        w.close()


def test_discover_runs(tmp_path):
    logdir = str(tmp_path)
    _write_model(logdir, _dense)  # the logdir itself is a run
    _write_model(os.path.join(logdir, "a", "b"), _dense, writer=False)  # checkpoint + .meta only
    _write_model(os.path.join(logdir, "est"), _dense)
    _summary_only(os.path.join(logdir, "est", "eval"))  # Estimator eval dir: not a run
    _write_model(os.path.join(logdir, "est", "varmap"), _dense)  # our own output: never a run
    os.makedirs(os.path.join(logdir, "empty"))
    tf.io.write_graph(tf.Graph().as_graph_def(), os.path.join(logdir, "g"), "graph.pbtxt")
    assert discover_runs(logdir) == [".", "a/b", "est", "g"]
    with pytest.raises(RunNotFound):
        discover_runs(str(tmp_path / "missing"))


def test_run_data_on_demo_model(tf1_models_dir):
    run = RunData(tf1_models_dir, "cnn_bn_adam")
    assert run.graph_source == "events"
    assert run.checkpoint_steps == [2, 5] and run.latest_step == 5
    assert run.checkpoint_prefix(2).endswith("model.ckpt-2")
    reader = tf.train.load_checkpoint(run.checkpoint_prefix(2))
    for info in run.variables(2):
        assert info.in_graph and info.in_checkpoint
        np.testing.assert_array_equal(run.read_variable(info.name, 2), reader.get_tensor(info.checkpoint_keys[0]))
    kernel = run.variable("model/conv1/kernel")
    assert kernel.shape == [3, 3, 3, 8] and kernel.dtype == "float32" and kernel.trainable
    assert not run.variable("model/bn1/moving_mean").trainable
    assert run.variable("model/conv1/kernel/Adam").kind == "optimizer_slot"
    assert run.variable("beta1_power").kind == "counter"
    assert not np.array_equal(run.read_variable("model/conv1/kernel", 2), run.read_variable("model/conv1/kernel"))
    assert run.default_io() == (["x"], ["probs:0"])
    assert run.graph_def is not None and run.meta_graph_def is not None
    assert run.graph_bytes() == run.graph_def.SerializeToString()


def test_graph_pbtxt_source_and_resource_reads(tf1_models_dir):
    run = RunData(tf1_models_dir, "mlp_estimator_style_resource")
    assert run.graph_source == "graph.pbtxt"
    info = run.variable("dnn/logits/kernel")
    assert info.read_tensors == ["dnn/logits/MatMul/ReadVariableOp:0"] and info.resource


def test_errors_name_the_thing(tf1_models_dir):
    with pytest.raises(RunNotFound, match="nope"):
        RunData(tf1_models_dir, "nope")
    run = RunData(tf1_models_dir, "dense_nobias")
    with pytest.raises(NotFound, match="step 99"):
        run.variables(99)
    with pytest.raises(NotFound, match="no variable 'dense/bias'"):
        run.read_variable("dense/bias")


@pytest.mark.parametrize("strategy", ["mod", "div"])
@pytest.mark.parametrize("use_resource", [False, True])
def test_partitioned_embedding_joins_like_tf_lookup(tmp_path, strategy, use_resource):
    def build():
        ids = v1.placeholder(tf.int64, [None], name="ids")
        table = v1.get_variable("emb", [10, 4], partitioner=v1.fixed_size_partitioner(3),
                                use_resource=use_resource)
        out = tf.identity(v1.nn.embedding_lookup(table, ids, partition_strategy=strategy), name="y")
        return {"lookup": out, "parts": [p for p in table]}

    _, res = _write_model(str(tmp_path / "m"), build, step=3,
                          feed_fn=lambda g: {g.get_tensor_by_name("ids:0"): np.arange(10)})
    run = RunData(str(tmp_path), "m")
    info = run.variable("emb")
    assert info.nodes == ["emb/part_0", "emb/part_1", "emb/part_2"]
    assert info.shape == [10, 4] and info.partition_axis == 0 and info.partition_sizes == [4, 3, 3]
    assert info.partition_strategy == strategy
    assert info.checkpoint_keys == ["emb"]  # the Saver stores one full tensor as slices
    np.testing.assert_array_equal(run.read_variable("emb"), res["lookup"])  # row i = lookup(i)
    np.testing.assert_array_equal(run.read_variable("emb", layout="checkpoint"), np.concatenate(res["parts"]))
    assert run.roles()["emb"].role == "embedding.table"
    nodes = {n["name"]: n for n in run.graph_json()["nodes"]}
    assert nodes["emb/part_2"]["variable"] == "emb"


def test_graph_and_checkpoint_differ(tmp_path):
    def build_ckpt():
        v1.get_variable("a", [2])
        v1.get_variable("extra", [3])

    def build_graph():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        a = v1.get_variable("a", [2])
        c = v1.get_variable("c", [2])
        tf.identity(x * a + c, name="y")

    _write_model(str(tmp_path), build_ckpt, writer=False)
    for name in os.listdir(tmp_path):
        if name.endswith(".meta"):
            os.remove(tmp_path / name)
    g = tf.Graph()
    with g.as_default():
        build_graph()
    tf.io.write_graph(g.as_graph_def(), str(tmp_path), "graph.pb", as_text=False)
    run = RunData(str(tmp_path), ".")
    flags = {v.name: (v.in_graph, v.in_checkpoint) for v in run.variables()}
    assert flags == {"a": (True, True), "c": (True, False), "extra": (False, True)}
    assert run.variable("extra").node == "" and run.variable("extra").read_tensors == []
    with pytest.raises(NotFound, match="not in the checkpoint"):
        run.read_variable("c")
    assert run.roles()["extra"].role is None and "not in the graph" in run.roles()["extra"].reason


def test_trainable_comes_from_meta_collection(tmp_path):
    def build():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        w = v1.get_variable("w", [2, 2])
        frozen = v1.get_variable("frozen", [2, 2], trainable=False)
        tf.identity(tf.matmul(tf.matmul(x, w), frozen), name="y")

    _write_model(str(tmp_path), build)
    run = RunData(str(tmp_path), ".")
    assert run.meta_graph_def is not None
    assert run.variable("w").trainable and not run.variable("frozen").trainable


def test_data_provider_source(tf1_models_dir):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(tf1_models_dir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, tf1_models_dir)
    run = RunData(tf1_models_dir, "conv_bias", data_provider=provider, experiment_id="")
    assert run.graph_source == "events"
    assert {v.name for v in run.variables()} == {"conv/kernel", "conv/bias"}


def test_graph_json_cached_and_explicit_io(tf1_models_dir):
    run = RunData(tf1_models_dir, "cnn_bn_adam")
    data = run.graph_json()
    assert data is run.graph_json()
    assert data["run"] == "cnn_bn_adam" and data["source"] == "events" and data["outputs"] == ["probs:0"]
    json.dumps(data, allow_nan=False)
    relu = [n["name"] for n in data["nodes"] if n["op"] == "Relu" and n["forward"]][0]
    partial = run.graph_json(["x"], [relu + ":0"])
    assert sum(n["forward"] for n in partial["nodes"]) < sum(n["forward"] for n in data["nodes"])
    assert relu in run.forward_nodes(["x"], [relu + ":0"])


def test_threads_share_one_parse(tf1_models_dir):
    run = RunData(tf1_models_dir, "mlp_estimator_style")
    seen, errors = [], []

    def work():
        try:
            seen.append((id(run.ir), id(run.variables()), id(run.roles())))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(seen)) == 1


def test_listing_runs_and_graphs_does_not_import_tensorflow(tf1_models_dir):
    code = (
        "import sys, tensorboard.program\n"  # as inside TensorBoard: tb_varmap then skips keras
        "from tb_varmap.run import RunData, discover_runs\n"
        "runs = discover_runs(sys.argv[1])\n"
        "for r in runs:\n"
        "    d = RunData(sys.argv[1], r); d.graph_json(); d.checkpoint_steps\n"
        "print(len(runs), 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, tf1_models_dir], capture_output=True, text=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(len(discover_runs(tf1_models_dir))), "False"]


def test_saver_renamed_keys_link_through_save_op(tmp_path):
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        w = v1.get_variable("w", [2, 2], use_resource=False)
        tf.identity(tf.matmul(x, w), name="y")
        saver = v1.train.Saver({"old_scope/kernel": w})
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            expected = sess.run(w)
            saver.save(sess, str(tmp_path / "model.ckpt"), global_step=1)
    tf.io.write_graph(g.as_graph_def(), str(tmp_path), "graph.pbtxt")
    run = RunData(str(tmp_path), ".")
    info = run.variable("old_scope/kernel")
    assert (info.node, info.checkpoint_keys, info.in_graph) == ("w", ["old_scope/kernel"], True)
    np.testing.assert_array_equal(run.read_variable("old_scope/kernel"), expected)
    assert run.roles()["old_scope/kernel"].role == "dense.kernel"
    assert [v.name for v in run.variables()] == ["old_scope/kernel"]


def test_iterator_input_pipeline(tmp_path):
    def build():
        ds = tf.data.Dataset.from_tensor_slices(np.ones([8, 3], np.float32)).batch(2)
        feats = v1.data.make_one_shot_iterator(ds).get_next()
        w = v1.get_variable("dense/kernel", [3, 2])
        tf.nn.softmax(tf.matmul(feats, w), name="probs")

    _write_model(str(tmp_path), build)
    run = RunData(str(tmp_path), ".")
    inputs, outputs = run.default_io()
    assert outputs == ["probs:0"]
    assert [run.ir.nodes[n].op for n in inputs] == ["IteratorGetNext"]


def test_slice_specs_and_mod_join():
    from tb_varmap.link import VariableInfo, join_partitions, parse_slice

    assert parse_slice("10 4 4,3:-") == ([10, 4], [(4, 3), None])
    assert parse_slice("garbage spec") == (None, None)
    parts = [np.array([[0], [3], [6], [9]]), np.array([[1], [4], [7]]), np.array([[2], [5], [8]])]
    info = VariableInfo(name="e", node="e/part_0", nodes=["e/part_0", "e/part_1", "e/part_2"],
                        checkpoint_keys=["e"], shape=[10, 1], dtype="float32", kind="weight",
                        trainable=True, read_tensors=[], in_graph=True, in_checkpoint=True,
                        partition_axis=0, partition_sizes=[4, 3, 3], partition_strategy="mod")
    np.testing.assert_array_equal(join_partitions(info, [np.concatenate(parts)])[:, 0], np.arange(10))
    info.partition_strategy = "div"
    np.testing.assert_array_equal(join_partitions(info, parts), np.concatenate(parts))


def test_session_bundle_signatures_are_decoded():
    """TF Serving's session_bundle keeps its signatures in the `serving_signatures`
    collection as a packed tensorflow.serving.Signatures (manifest.proto)."""
    from tb_varmap.run import _session_bundle_signatures

    def field(number, payload):
        payload = payload.encode() if isinstance(payload, str) else payload
        return bytes([number << 3 | 2, len(payload)]) + payload

    binding = lambda name: field(1, name)  # noqa: E731  TensorBinding
    regression = field(1, field(1, binding("tf_example:0")) + field(2, binding("Identity:0")))
    generic = lambda key, tensor: field(3, field(1, field(1, key) + field(2, binding(tensor))))  # noqa: E731
    classify = field(2, field(1, binding("tf_example:0")) + field(2, binding("classes:0"))
                     + field(3, binding("scores:0")))
    data = (field(1, regression)
            + field(2, field(1, "inputs") + field(2, generic("x", "x:0")))
            + field(2, field(1, "outputs") + field(2, generic("y", "y:0")))
            + field(2, field(1, "cls") + field(2, classify)))
    assert _session_bundle_signatures(data) == [
        ("serving_default", "regress", ["tf_example:0"], ["Identity:0"]),
        ("cls", "classify", ["tf_example:0"], ["scores:0", "classes:0"]),
        ("inputs/outputs", "predict", ["x:0"], ["y:0"]),
    ]
    with pytest.raises(ValueError):
        _session_bundle_signatures(b"\x0a\x7f")  # truncated
