"""Whole-model behaviour: custom trainable params, save/load with safe_mode,
trainability, fallbacks and their report, shared variables, errors, a real TF1 graph."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tb_varmap  # noqa: F401  (registers the custom layers for load_model)
from tb_varmap.convert import convert_graph
from tb_varmap.convert.testing import bindings_from_graph, check_weights, run_model
from tb_varmap.errors import BadInput

tf1 = tf.compat.v1
COVERS = set()
REAL = "/work/shared/fixtures/real/half_plus_two_savedmodel"


def build(fn, seed=0):
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(seed)
        io = fn()
        sess = tf1.Session(graph=g)
        sess.run(tf1.global_variables_initializer())
    return g, sess, io


def seed_graph(resource=True):
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    with tf1.variable_scope("fc"):
        h = tf.matmul(x, tf1.get_variable("kernel", [4, 3], use_resource=resource))
    with tf1.variable_scope("gate"):
        p = tf1.get_variable("param", [], initializer=tf1.constant_initializer(0.7),
                             use_resource=resource)
        y = tf.sigmoid(h * p, name="probs")
    return x, y


@pytest.mark.parametrize("resource", [True, False], ids=["resource", "ref"])
def test_seed_case_param_is_trainable_and_learns(tmp_path, resource):
    g, sess, (x, y) = build(lambda: seed_graph(resource))
    variables = bindings_from_graph(g, sess)
    feed = np.random.RandomState(0).randn(8, 4).astype(np.float32)
    ref = sess.run(y, {x: feed})
    conv = convert_graph(g.as_graph_def(), ["x"], ["gate/probs:0"], variables)
    (got,) = run_model(conv.model, [feed])
    assert np.array_equal(got, ref)
    check_weights(conv, variables)
    gate = [lb for lb in conv.layers if lb.tf_nodes == ["gate/mul"]]
    assert len(gate) == 1 and not gate[0].standard and gate[0].keras_class == "VarMapOp"
    param = conv.model.get_layer(gate[0].layer).weights[0]
    assert param.path == gate[0].variables[0]["weight"]
    assert sorted(w.path for w in conv.model.trainable_weights) == \
        sorted(["fc/kernel", param.path])
    # saved and loaded with safe_mode, no arrays in the config
    path = str(tmp_path / "m.keras")
    conv.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    (again,) = run_model(loaded, [feed])
    assert np.array_equal(again, ref)
    config = json.dumps(loaded.get_config())
    assert "0.7" not in config and "__numpy__" not in config
    # one training step moves the custom param
    before = float(np.asarray(param.numpy()))
    conv.model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    conv.model.fit(feed, np.zeros_like(ref), epochs=1, batch_size=8, verbose=0)
    assert float(np.asarray(param.numpy())) != before


def test_trainable_weights_match_tf_trainable_variables():
    def fn():
        x = tf1.placeholder(tf.float32, [None, 5, 5, 3], name="x")
        with tf1.variable_scope("conv"):
            k = tf1.get_variable("kernel", [3, 3, 3, 4])
            y = tf.nn.conv2d(x, k, 1, "SAME")
        with tf1.variable_scope("bn"):
            mk = lambda n, tr, init: tf1.get_variable(n, [4], trainable=tr,  # noqa: E731
                                                      initializer=init)
            y = tf1.nn.fused_batch_norm(
                y, mk("gamma", True, tf1.ones_initializer()),
                mk("beta", True, tf1.zeros_initializer()),
                mk("moving_mean", False, tf1.zeros_initializer()),
                mk("moving_variance", False, tf1.ones_initializer()),
                is_training=False)[0]
        with tf1.variable_scope("frozen"):
            f = tf1.get_variable("scale", [4], trainable=False)
            y = tf.multiply(y, f, name="mul")
        return x, y

    g, sess, (x, y) = build(fn)
    variables = bindings_from_graph(g, sess)
    conv = convert_graph(g.as_graph_def(), ["x"], [y.name], variables)
    check_weights(conv, variables)
    trainable_tf = {v.name for v in variables if v.trainable}
    assert trainable_tf == {"conv/kernel", "bn/gamma", "bn/beta"}
    path_of = {v["weight"]: v["variable"] for lb in conv.layers for v in lb.variables}
    assert sorted(path_of[w.path] for w in conv.model.trainable_weights) == \
        sorted(trainable_tf)
    assert {path_of[w.path] for w in conv.model.non_trainable_weights} == \
        {"bn/moving_mean", "bn/moving_variance", "frozen/scale"}


def test_unmapped_op_falls_back_and_is_reported(tmp_path):
    def fn():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        with tf1.variable_scope("odd"):
            w = tf1.get_variable("w", [6])
            y = tf.math.erf(tf.math.cos(x) * w)
        return x, tf.identity(y * 2.0 + 1.0, name="out")

    g, sess, (x, y) = build(fn)
    variables = bindings_from_graph(g, sess)
    feed = np.random.RandomState(2).randn(3, 6).astype(np.float32)
    ref = sess.run(y, {x: feed})
    conv = convert_graph(g.as_graph_def(), ["x"], ["out:0"], variables)
    (got,) = run_model(conv.model, [feed])
    assert np.array_equal(got, ref)
    unsupported = conv.report["unsupported"]
    assert unsupported["by_op"] == {"Cos": 1, "Erf": 1}
    assert {n["node"] for n in unsupported["nodes"]} == {"odd/Cos", "odd/Erf"}
    assert all("no handler" in n["reason"] for n in unsupported["nodes"])
    assert conv.report["custom_weights"]["count"] == 3       # w, 2.0, 1.0
    assert [w.path for w in conv.model.trainable_weights] == ["odd/w"]
    path = str(tmp_path / "fallback.keras")
    conv.model.save(path)
    (again,) = run_model(keras.saving.load_model(path), [feed])
    assert np.array_equal(again, ref)


def test_failures_are_collected_and_raised_together():
    def fn():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        s = tf1.placeholder(tf.float32, [], name="scale")
        t = tf1.placeholder(tf.float32, [], name="shift")
        return x, tf.identity(x * s + t, name="y")

    g, sess, (x, y) = build(fn)
    with pytest.raises(BadInput) as err:
        convert_graph(g.as_graph_def(), ["x"], ["y:0"], [])
    problems = "\n".join(err.value.problems)
    assert "mul (Mul)" in problems and "scale" in problems
    assert "add (AddV2)" in problems


def test_shared_variable_stays_one_weight():
    def fn():
        a = tf1.placeholder(tf.float32, [None, 4], name="a")
        b = tf1.placeholder(tf.float32, [None, 4], name="b")
        outs = []
        for i, x in enumerate([a, b]):
            with tf1.variable_scope("shared", reuse=i > 0):
                w = tf1.get_variable("kernel", [4, 2])
                bias = tf1.get_variable("bias", [2])
                outs.append(tf.nn.bias_add(tf.matmul(x, w), bias))
        return (a, b), outs

    g, sess, ((a, b), outs) = build(fn)
    variables = bindings_from_graph(g, sess)
    fa, fb = (np.random.RandomState(i).randn(2, 4).astype(np.float32) for i in (3, 4))
    ref = sess.run(outs, {a: fa, b: fb})
    conv = convert_graph(g.as_graph_def(), ["a", "b"], [t.name for t in outs], variables)
    got = run_model(conv.model, [fa, fb])
    assert all(np.array_equal(r, k) for r, k in zip(ref, got))
    dense = [lb for lb in conv.layers if lb.keras_class == "Dense"]
    assert len(dense) == 2 and dense[0].layer == dense[1].layer
    assert [lb.tf_inputs for lb in dense] == [["a:0"], ["b:0"]]
    assert len(conv.model.trainable_weights) == 2
    assert conv.report["shared_variables"] == []


def test_variable_used_by_two_different_ops_is_reported():
    def fn():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", [3, 3])
        a = tf.matmul(x, w, name="straight")
        b = tf.matmul(x, w, transpose_b=True, name="flipped")
        return x, tf.identity(a + b + tf.reduce_sum(w), name="y")

    g, sess, (x, y) = build(fn)
    variables = bindings_from_graph(g, sess)
    conv = convert_graph(g.as_graph_def(), ["x"], ["y:0"], variables)
    feed = np.random.RandomState(5).randn(2, 3).astype(np.float32)
    # transpose_b sums in another order (see test_convert_handlers): ~1 ulp
    np.testing.assert_allclose(run_model(conv.model, [feed])[0], sess.run(y, {x: feed}),
                               rtol=1e-6, atol=1e-6)
    (shared,) = conv.report["shared_variables"]
    assert shared["variable"] == "w" and shared["layers"] == ["straight", "flipped"]
    # reduce_sum(w) does not depend on x: folded to a constant, and said so
    assert any("['w']" in w and "folded" in w for w in conv.report["warnings"])
    assert len(conv.model.trainable_weights) == 2


def test_multi_output_op_falls_back_with_inline_axis():
    def fn():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        a, b, c = tf.split(x, 3, axis=1, name="split")
        return x, [tf.nn.relu(a, name="ra"), tf.identity(c * 2.0, name="rc")]

    g, sess, (x, outs) = build(fn)
    conv = convert_graph(g.as_graph_def(), ["x"], [t.name for t in outs], [])
    feed = np.random.RandomState(6).randn(4, 6).astype(np.float32)
    got = run_model(conv.model, [feed])
    assert all(np.array_equal(r, k) for r, k in zip(sess.run(outs, {x: feed}), got))
    (split,) = [lb for lb in conv.layers if lb.tf_nodes == ["split"]]
    assert split.tf_outputs == ["split:0", "split:2"]
    assert conv.report["unsupported"]["by_op"] == {"Split": 1}
    config = conv.model.get_layer(split.layer).get_config()
    assert config["args"][0] == {"const": [1], "dtype": "int32", "shape": []}


def test_progress_and_report_shape():
    g, sess, (x, y) = build(seed_graph)
    seen = []
    conv = convert_graph(g.as_graph_def().SerializeToString(), ["x:0"], ["gate/probs"],
                         bindings_from_graph(g, sess), name="seeded",
                         progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert conv.model.name == "seeded"
    report = json.loads(json.dumps(conv.report))          # JSON-safe
    assert report["standard_weights"] == {"count": 1, "params": 12}
    assert report["custom_weights"] == {"count": 1, "params": 1}
    assert report["inputs"][0]["tf"] == "x" and report["inputs"][0]["shape"] == [None, 4]
    assert report["outputs"] == [{"tf": "gate/probs:0", "layer": "gate_probs"}]
    layer = {entry["layer"]: entry for entry in report["layers"]}["fc"]
    assert layer["keras_class"] == "Dense" and layer["standard"] is True
    assert layer["variables"][0]["variable"] == "fc/kernel"


def test_bad_names_are_bad_input():
    g, sess, _ = build(seed_graph)
    with pytest.raises(BadInput, match="nope"):
        convert_graph(g.as_graph_def(), ["x"], ["nope:0"], [])
    with pytest.raises(BadInput, match="missing"):
        convert_graph(g.as_graph_def(), ["missing"], ["gate/probs:0"], [])
    with pytest.raises(BadInput, match="does not depend"):
        convert_graph(g.as_graph_def(), ["x"], ["gate/param/Read/ReadVariableOp:0"], [])


def test_nchw_is_reported_clearly():
    def fn():
        x = tf1.placeholder(tf.float32, [None, 3, 8, 8], name="x")
        k = tf1.get_variable("k", [3, 3, 3, 4])
        return x, tf.nn.conv2d(x, k, 1, "SAME", data_format="NCHW", name="conv")

    g, sess, (x, y) = build(fn)
    conv = convert_graph(g.as_graph_def(), ["x"], ["conv:0"], bindings_from_graph(g, sess))
    (node,) = conv.report["unsupported"]["nodes"]
    assert node["node"] == "conv" and "NCHW" in node["reason"]


def test_real_tf1_savedmodel_half_plus_two(tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    from tb_varmap.convert import VariableBinding

    shutil.copytree(REAL, tmp_path / "hp2")
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((tmp_path / "hp2" / "saved_model.pb").read_bytes())
    gd = sm.meta_graphs[0].graph_def
    reader = tf.train.load_checkpoint(str(tmp_path / "hp2" / "variables" / "variables"))
    variables = [VariableBinding(n, [f"{n}/read:0"], "custom.param", True,
                                 reader.get_tensor(n)) for n in ("a", "b", "c")]
    conv = convert_graph(gd, ["x"], ["y:0", "y2:0"], variables)
    feed = np.array([[0.0], [1.0], [3.0]], np.float32)
    y, y2 = run_model(conv.model, [feed])
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
        with tf1.Session(graph=g) as sess:
            ref = sess.run(["y:0", "y2:0"], {"x:0": feed, **{f"{v.name}/read:0": v.value
                                                              for v in variables}})
    assert np.array_equal(y, ref[0]) and np.array_equal(y2, ref[1])
    np.testing.assert_array_equal(y[:, 0], [2.0, 2.5, 3.5])
    check_weights(conv, variables)
    # `a` feeds two Mul nodes with the same config: one layer, one weight
    muls = [lb for lb in conv.layers if lb.tf_nodes[0] in ("Mul", "Mul_1")]
    assert len(muls) == 2 and muls[0].layer == muls[1].layer
    assert len(conv.model.trainable_weights) == 3


def test_scalar_switch_input_takes_its_default():
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        scale = tf1.placeholder_with_default(2.0, [], name="scale")
        tf.identity(x * scale, name="y")
    conv = convert_graph(g.as_graph_def(), ["x", "scale"], ["y:0"], [])
    assert [i.name for i in conv.model.inputs] == ["x"]
    assert any("scale" in w for w in conv.report["warnings"])
    feed = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run_model(conv.model, [feed])[0], feed * 2.0)


def test_fresh_process_loads_after_import_tb_varmap(tmp_path):
    """What users do: a new Python, `import tb_varmap`, load_model with safe_mode."""
    import subprocess
    import sys

    g, sess, (x, y) = build(seed_graph)
    conv = convert_graph(g.as_graph_def(), ["x"], ["gate/probs:0"],
                         bindings_from_graph(g, sess))
    feed = np.random.RandomState(4).randn(3, 4).astype(np.float32)
    np.save(tmp_path / "feed.npy", feed)
    np.save(tmp_path / "want.npy", run_model(conv.model, [feed])[0])
    conv.model.save(tmp_path / "m.keras")
    code = ("import sys, numpy as np, tb_varmap, keras\n"
            "m = keras.saving.load_model(sys.argv[1] + '/m.keras', safe_mode=True)\n"
            "got = np.asarray(m([np.load(sys.argv[1] + '/feed.npy')]))\n"
            "assert got.tobytes() == np.load(sys.argv[1] + '/want.npy').tobytes()\n"
            "print(sorted(type(l).__name__ for l in m.layers))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "VarMapOp" in out.stdout


@pytest.mark.slow          # 1355 Keras layers: ~20 s
def test_real_tf012_char_rnn(tmp_path):
    """A TF 0.12 char-RNN (ref `Variable`s, pre-1.0 `Concat`, 2 × BasicLSTMCell unrolled
    50 steps) read with TF only: converted, run against the original graph, bit-exact."""
    from tensorflow.core.framework import variable_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    from tb_varmap.convert import VariableBinding

    src = "/work/shared/fixtures/real/charrnn_lstm_tf012"
    shutil.copytree(src, tmp_path / "run")
    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString((tmp_path / "run" / "model.ckpt-46499.meta").read_bytes())
    gd = meta.graph_def
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "model.ckpt-46499"))
    trainable = set()
    for raw in meta.collection_def["trainable_variables"].bytes_list.value:
        vd = variable_pb2.VariableDef()
        vd.ParseFromString(raw)
        trainable.add(vd.variable_name.split(":")[0])
    variables = [VariableBinding(n, [n + "/read:0"], "", n in trainable, reader.get_tensor(n))
                 for n in sorted(trainable)]
    conv = convert_graph(gd, ["Placeholder"], ["Softmax:0"], variables)
    feed = np.random.RandomState(0).randint(0, 67, (5, 50)).astype(np.int32)
    (got,) = run_model(conv.model, [feed])
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
        with tf1.Session(graph=g) as sess:
            ref = sess.run("Softmax:0", {"Placeholder:0": feed,
                                         **{v.read_tensors[0]: v.value for v in variables}})
    assert np.array_equal(got, ref)
    check_weights(conv, variables)
    classes = {lb.keras_class for lb in conv.layers}
    assert {"Embedding", "Dense", "Concatenate"} <= classes
    assert conv.report["unsupported"]["by_op"] == {"Split": 101}
    assert len(conv.model.trainable_weights) == len(trainable) == 7
