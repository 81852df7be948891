"""verify.py over real TF1 graphs + checkpoints and hand-built Keras 3 models."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import keras

from tb_varmap import verify as V
from tb_varmap.errors import BadInput

from tb_varmap.convert import Conversion, LayerBinding, VariableBinding, convert_graph


SIZES = [(4, 8), (8, 8), (8, 3)]       # dense1..dense3; dense2 is square (transposable)


def _reads(graph_def, var_node):
    """Read tensors of a variable node, as link.py defines them."""
    nodes = {n.name: n for n in graph_def.node}
    if nodes[var_node].op == "VarHandleOp":
        return sorted(n.name + ":0" for n in graph_def.node
                      if n.op == "ReadVariableOp" and n.input[0] == var_node)
    return [var_node + "/read:0"]


def _save_tf1(tmp_path, build, resource=False, seed=1):
    """Build a TF1 graph with `build()`, initialize, Saver-save; (graph_def, ckpt values)."""
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(seed)
        with tf.compat.v1.variable_scope("", use_resource=resource):
            build()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=5)
    reader = tf.train.load_checkpoint(prefix)
    values = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    return g.as_graph_def(), values


def _build_mlp():
    h = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
    for i, (n_in, n_out) in enumerate(SIZES, 1):
        with tf.compat.v1.variable_scope(f"dense{i}"):
            w = tf.compat.v1.get_variable("kernel", [n_in, n_out])
            b = tf.compat.v1.get_variable(
                "bias", [n_out], initializer=tf.compat.v1.random_normal_initializer())
            h = tf.nn.bias_add(tf.matmul(h, w), b)
            if i < 3:
                h = tf.nn.relu(h)
    tf.identity(h, name="out")


def _mlp_layer_out(graph_def, i):
    return f"dense{i}/Relu:0" if i < 3 else "dense3/BiasAdd:0"


def mlp_case(tmp_path, resource=False):
    gd, values = _save_tf1(tmp_path, _build_mlp, resource)
    variables = [VariableBinding(name=k, read_tensors=_reads(gd, k),
                                 role="dense." + k.split("/")[1], trainable=True,
                                 value=values[k])
                 for k in sorted(values)]
    x = keras.Input((4,), name="x")
    h, layers = x, []
    prev = "x:0"
    for i, (_, n_out) in enumerate(SIZES, 1):
        name = f"dense{i}"
        h = keras.layers.Dense(n_out, activation="relu" if i < 3 else None, name=name)(h)
        out = _mlp_layer_out(gd, i)
        layers.append(LayerBinding(
            layer=name, keras_class="Dense", tf_nodes=[], tf_inputs=[prev], tf_outputs=[out],
            variables=[{"variable": f"{name}/kernel", "role": "dense.kernel",
                        "weight": f"{name}/kernel"},
                       {"variable": f"{name}/bias", "role": "dense.bias",
                        "weight": f"{name}/bias"}],
            standard=True))
        prev = out
    model = keras.Model(x, h, name="mlp")
    for i in range(1, 4):
        model.get_layer(f"dense{i}").set_weights(
            [values[f"dense{i}/kernel"], values[f"dense{i}/bias"]])
    return gd, variables, Conversion(model=model, layers=layers, report={})


def statuses(report, kind):
    return {r["layer"]: r[kind]["status"] for r in report["layers"]}


@pytest.mark.parametrize("resource", [False, True], ids=["ref", "resource"])
def test_correct_model_passes_exactly(tmp_path, resource):
    gd, variables, conv = mlp_case(tmp_path, resource)
    seen = []
    report = V.verify(gd, ["x"], ["out:0"], variables, conv,
                      progress=lambda f, m: seen.append((f, m)))
    assert report["passed"] is True
    for row in report["layers"]:
        assert row["isolated"] == {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0,
                                   "status": "OK"}
        assert row["cumulative"]["max_abs"] == 0.0
    (out,) = report["outputs"]
    assert out["name"] == "out:0" and out["status"] == "OK" and out["max_abs"] == 0.0
    assert len(out["sample"]["original"]) == 2 * 3 == len(out["sample"]["keras"])
    assert out["sample"]["original"] == out["sample"]["keras"]
    assert sum(out["error_histogram"]["counts"]) == 6
    assert len(out["error_histogram"]["edges"]) == len(out["error_histogram"]["counts"]) + 1
    grads = {g["variable"]: g for g in report["gradients"]}
    assert set(grads) == {f"dense{i}/{k}" for i in (1, 2, 3) for k in ("kernel", "bias")}
    assert all(g["status"] == "OK" for g in grads.values()), grads
    assert max(g["max_abs"] for g in grads.values()) <= 1e-6
    assert report["inputs"]["source"] == "random"
    assert report["inputs"]["tensors"][0]["shape"] == [2, 4]
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    json.dumps(report, allow_nan=False)


def test_transposed_kernel_is_named_in_isolation(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)
    layer = conv.model.get_layer("dense2")
    k, b = layer.get_weights()
    layer.set_weights([k.T, b])
    report = V.verify(gd, ["x"], ["out:0"], variables, conv)
    assert report["passed"] is False
    assert statuses(report, "isolated") == {"dense1": "OK", "dense2": "INACCURATE",
                                            "dense3": "OK"}
    assert statuses(report, "cumulative") == {"dense1": "OK", "dense2": "INACCURATE",
                                              "dense3": "INACCURATE"}
    assert report["layers"][0]["isolated"]["max_abs"] == 0.0
    assert report["layers"][1]["isolated"]["max_abs"] > 1e-3
    assert report["worst"][0]["layer"] == "dense2"
    assert report["outputs"][0]["status"] == "INACCURATE"
    grads = {g["variable"]: g["status"] for g in report["gradients"]}
    assert grads["dense2/kernel"] == "INACCURATE"


def test_nontrainable_layer_and_wrong_weight_caught_by_gradients(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)
    conv.model.get_layer("dense1").trainable = False
    report = V.verify(gd, ["x"], ["out:0"], variables, conv)
    grads = {g["variable"]: g for g in report["gradients"]}
    assert grads["dense1/kernel"]["status"] == "FAILED"
    assert "not trainable" in grads["dense1/kernel"]["reason"]
    assert grads["dense2/kernel"]["status"] == "OK"
    assert statuses(report, "isolated") == dict.fromkeys(["dense1", "dense2", "dense3"], "OK")
    assert report["passed"] is False

    # a wrong value that forward outputs do not see on this input: dense3's bias is
    # compared fine, but a wrong dense3 kernel changes dense2's gradients
    gd, variables, conv = mlp_case(tmp_path / "b")
    layer = conv.model.get_layer("dense3")
    k, b = layer.get_weights()
    layer.set_weights([k * 1.01, b])
    report = V.verify(gd, ["x"], ["out:0"], variables, conv)
    grads = {g["variable"]: g["status"] for g in report["gradients"]}
    assert grads["dense2/kernel"] == "INACCURATE" and grads["dense3/bias"] == "OK"


def test_gradients_of_a_named_loss(tmp_path):
    def build():
        _build_mlp()
        g = tf.compat.v1.get_default_graph()
        labels = tf.compat.v1.placeholder(tf.float32, [None, 3], name="labels")
        tf.reduce_mean(tf.square(g.get_tensor_by_name("out:0") - labels), name="loss")

    gd, values = _save_tf1(tmp_path, build)
    _, variables, conv = mlp_case(tmp_path / "m")
    for v in variables:
        v.value = values[v.name]
    for i in range(1, 4):
        conv.model.get_layer(f"dense{i}").set_weights(
            [values[f"dense{i}/kernel"], values[f"dense{i}/bias"]])
    plain = V.verify(gd, ["x"], ["out:0"], variables, conv)
    lossy = V.verify(gd, ["x"], ["out:0"], variables, conv, loss="loss")
    assert lossy["passed"] is True
    extra = [t for t in lossy["inputs"]["tensors"] if t.get("extra")]
    assert [(t["name"], t["shape"]) for t in extra] == [("labels", [2, 3])]
    g1 = {g["variable"]: g for g in plain["gradients"]}
    g2 = {g["variable"]: g for g in lossy["gradients"]}
    assert all(g["status"] == "OK" for g in g2.values())
    assert set(g1) == set(g2)
    rng = np.random.default_rng(5)
    given = {"x": rng.standard_normal((3, 4)).astype(np.float32),
             "labels": rng.standard_normal((3, 3)).astype(np.float32)}
    fed = V.verify(gd, ["x"], ["out:0"], variables, conv, given, loss="loss")
    assert fed["passed"] is True
    assert [(t["name"], t["shape"], t.get("extra")) for t in fed["inputs"]["tensors"]] == \
        [("x", [3, 4], None), ("labels", [3, 3], None)]
    only_x = V.verify(gd, ["x"], ["out:0"], variables, conv, {"x": given["x"]}, loss="loss")
    assert only_x["passed"] is True                     # random labels take x's batch of 3
    assert only_x["inputs"]["tensors"][1] == {**only_x["inputs"]["tensors"][1],
                                              "name": "labels", "shape": [3, 3], "extra": True}
    # a wrong dense3 kernel shows in the loss-weighted gradients of dense2
    k, b = conv.model.get_layer("dense3").get_weights()
    conv.model.get_layer("dense3").set_weights([k + 0.1, b])
    wrong = V.verify(gd, ["x"], ["out:0"], variables, conv, loss="loss")
    wrong = {g["variable"]: g["status"] for g in wrong["gradients"]}
    assert wrong["dense2/kernel"] == wrong["dense2/bias"] == "INACCURATE"
    assert wrong["dense3/bias"] == "OK"     # d loss/d b3 = d loss/d y: weights unused


def test_layer_with_bad_binding_fails_without_sinking_others(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)
    conv.layers[1].tf_outputs = ["dense2/BiasAdd:0", "dense2/Relu:0"]
    conv.layers[2].tf_inputs = ["no_such_node:0"]
    with pytest.raises(BadInput, match="no_such_node"):
        V.verify(gd, ["x"], ["out:0"], variables, conv)
    conv.layers[2].tf_inputs = ["dense2/Relu:0"]
    report = V.verify(gd, ["x"], ["out:0"], variables, conv)
    iso = {r["layer"]: r["isolated"] for r in report["layers"]}
    assert iso["dense2"]["status"] == "FAILED" and "2 tf_outputs" in iso["dense2"]["reason"]
    assert iso["dense1"]["status"] == iso["dense3"]["status"] == "OK"
    assert report["passed"] is False


# ---------------------------------------------------------------- embeddings / int inputs

VOCAB, DIM = 7, 5


def _build_embed():
    ids = tf.compat.v1.placeholder(tf.int32, [None, 6], name="ids")
    table = tf.compat.v1.get_variable("emb/embeddings", [VOCAB, DIM])
    e = tf.gather(table, ids, name="emb/lookup")
    m = tf.reduce_mean(e, axis=1, name="pool/mean")
    with tf.compat.v1.variable_scope("fc"):
        w = tf.compat.v1.get_variable("kernel", [DIM, 2])
        b = tf.compat.v1.get_variable("bias", [2])
    tf.nn.bias_add(tf.matmul(m, w), b, name="logits")


def embed_case(tmp_path, resource=False):
    gd, values = _save_tf1(tmp_path, _build_embed, resource)
    roles = {"emb/embeddings": "embedding.table", "fc/kernel": "dense.kernel",
             "fc/bias": "dense.bias"}
    variables = [VariableBinding(k, _reads(gd, k), roles[k], True, values[k]) for k in roles]
    ids = keras.Input((6,), dtype="int32", name="ids")
    e = keras.layers.Embedding(VOCAB, DIM, name="emb")(ids)
    m = keras.layers.GlobalAveragePooling1D(name="pool")(e)
    y = keras.layers.Dense(2, name="fc")(m)
    model = keras.Model(ids, y)
    model.get_layer("emb").set_weights([values["emb/embeddings"]])
    model.get_layer("fc").set_weights([values["fc/kernel"], values["fc/bias"]])
    layers = [
        LayerBinding("emb", "Embedding", [], ["ids:0"], ["emb/lookup:0"],
                     [{"variable": "emb/embeddings", "role": "embedding.table",
                       "weight": "emb/embeddings"}], True),
        LayerBinding("pool", "GlobalAveragePooling1D", [], ["emb/lookup:0"],
                     ["pool/mean:0"], [], True),
        LayerBinding("fc", "Dense", [], ["pool/mean:0"], ["logits:0"],
                     [{"variable": "fc/kernel", "role": "dense.kernel", "weight": "fc/kernel"},
                      {"variable": "fc/bias", "role": "dense.bias", "weight": "fc/bias"}],
                     True),
    ]
    return gd, variables, Conversion(model, layers, {})


@pytest.mark.parametrize("resource", [False, True], ids=["ref", "resource"])
def test_int_inputs_index_the_embedding_table(tmp_path, resource):
    gd, variables, conv = embed_case(tmp_path, resource)
    seen = set()
    for seed in range(20):
        feed = V.make_inputs(gd, ["ids"], variables, seed)
        ids = feed["ids"]
        assert ids.dtype == np.int32 and ids.shape == (2, 6)
        assert ids.min() >= 0 and ids.max() < VOCAB
        seen.update(ids.ravel().tolist())
    assert seen == set(range(VOCAB))
    again = V.make_inputs(gd, ["ids"], variables, 3)["ids"]
    assert np.array_equal(again, V.make_inputs(gd, ["ids"], variables, 3)["ids"])
    report = V.verify(gd, ["ids"], ["logits:0"], variables, conv, seed=4)
    assert report["passed"] is True, report
    assert report["inputs"]["tensors"][0]["max"] < VOCAB
    grads = {g["variable"]: g["status"] for g in report["gradients"]}
    assert grads == {"emb/embeddings": "OK", "fc/kernel": "OK", "fc/bias": "OK"}


def test_make_inputs_shapes_dtypes_and_errors(tmp_path):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.placeholder(tf.float64, [None, None, 3], name="seq")
        tf.compat.v1.placeholder(tf.bool, [], name="training")
        tf.compat.v1.placeholder(tf.int64, [4], name="n")
        tf.compat.v1.placeholder(tf.float32, None, name="anything")
        tf.compat.v1.placeholder(tf.string, [2], name="text")
        tf.constant(1.0, name="c")
    gd = g.as_graph_def()
    feed = V.make_inputs(gd, ["seq", "training", "n"], [], seed=0, batch=3)
    assert feed["seq"].shape == (3, V.UNKNOWN_DIM, 3) and feed["seq"].dtype == np.float64
    assert feed["training"].dtype == bool and not feed["training"]
    assert feed["n"].dtype == np.int64 and 1 <= feed["n"].min()
    assert feed["n"].max() <= V.UNKNOWN_DIM
    # a first dim fixed by one input is the batch of the others
    g2 = tf.Graph()
    with g2.as_default():
        tf.compat.v1.placeholder(tf.float32, [1, 5, None], name="images")
        tf.compat.v1.placeholder(tf.int32, [None], name="lengths")
    feed = V.make_inputs(g2.as_graph_def(), ["images", "lengths"], [], seed=0)
    assert feed["images"].shape == (1, 5, V.UNKNOWN_DIM) and feed["lengths"].shape == (1,)
    with pytest.raises(BadInput, match="'anything'.*unknown rank"):
        V.make_inputs(gd, ["anything"], [], 0)
    with pytest.raises(BadInput, match="'text'.*string"):
        V.make_inputs(gd, ["text"], [], 0)
    with pytest.raises(BadInput, match="'c'.*expected a Placeholder"):
        V.make_inputs(gd, ["c"], [], 0)
    with pytest.raises(BadInput, match="'nope'.*no such node"):
        V.make_inputs(gd, ["nope"], [], 0)


# ---------------------------------------------------------------- npz

def test_npz_inputs_are_checked(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)
    good = tmp_path / "good.npz"
    x = np.random.default_rng(0).standard_normal((5, 4))
    np.savez(good, x=x)                       # float64: same kind, cast to float32
    feed = V.load_inputs_npz(str(good), gd, ["x"])
    assert feed["x"].dtype == np.float32 and feed["x"].shape == (5, 4)
    report = V.verify(gd, ["x"], ["out:0"], variables, conv, feed)
    assert report["passed"] and report["inputs"]["source"] == "feed"
    assert report["inputs"]["tensors"][0]["shape"] == [5, 4]

    cases = {
        "missing": ({"y": x}, r"missing key 'x'"),
        "shape": ({"x": x[:, :3]}, r"key 'x': shape \[5, 3\] does not fit placeholder "
                                   r"shape \[\?, 4\]"),
        "rank": ({"x": x[0]}, r"key 'x': shape \[4\]"),
        "dtype": ({"x": x.astype(np.int32)}, r"key 'x': dtype int32 does not fit.*float32"),
        "extra": ({"x": x, "dense1/kernel": x}, r"key 'dense1/kernel' names no placeholder"),
    }
    for name, (arrays, pattern) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(BadInput, match=pattern) as err:
            V.load_inputs_npz(str(path), gd, ["x"])
        assert str(path) in str(err.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="junk.npz.*not a readable .npz"):
        V.load_inputs_npz(str(tmp_path / "junk.npz"), gd, ["x"])
    with pytest.raises(BadInput, match="missing key 'x'"):
        V.verify(gd, ["x"], ["out:0"], variables, conv, {"z": x})


# ---------------------------------------------------------------- comparison rules

def test_compare_tolerance_rules():
    b = np.array([1.0, -2.0, 0.0, 1000.0], np.float32)
    assert V.compare(b, b)["status"] == "OK"
    assert V.compare(b + 1e-7, b, atol=0, rtol=0)["status"] == "OK"      # float noise
    assert V.compare(b.astype(np.float64) + 1e-7, b, atol=0, rtol=0)["status"] == "OK"
    assert V.compare(b + 1e-6, b, atol=0, rtol=0)["status"] == "INACCURATE"
    assert V.compare(b + np.float32(2e-5), b)["status"] == "INACCURATE"
    big = b.copy()
    big[3] += 5e-3                             # within atol + rtol * 1000 = 1.001e-2
    assert V.compare(big, b, atol=1e-5, rtol=1e-5)["status"] == "OK"
    assert V.compare(big, b)["max_abs"] == pytest.approx(5e-3, 1e-2)
    assert V.compare(big, b)["max_rel"] == pytest.approx(5e-6, 1e-2)
    big[3] += 5e-2
    assert V.compare(big, b, atol=1e-5, rtol=1e-5)["status"] == "INACCURATE"
    assert V.compare(big, b, atol=1e-5, rtol=1e-4)["status"] == "OK"
    nan = b.copy()
    nan[0] = np.nan
    r = V.compare(nan, b)
    assert r["status"] == "FAILED" and "NaN" in r["reason"]
    assert V.compare(nan, nan)["status"] == "OK"                         # NaN where NaN
    r = V.compare(b[:3], b)
    assert r["status"] == "FAILED" and "shape mismatch" in r["reason"]
    assert r["max_abs"] is None
    inf = b.copy()
    inf[1] = np.inf
    r = V.compare(inf, b)
    assert r["status"] == "INACCURATE" and r["max_abs"] == "inf"
    json.dumps(r, allow_nan=False)
    s = V.sample(np.arange(1000.0))
    assert len(s) == V.SAMPLE_SIZE and s[0] == 0.0 and s[-1] == 999.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in V.sample([np.nan]))


# ---------------------------------------------------------------- functions, real converter

@pytest.mark.parametrize("v2", [True, False], ids=["while_v2", "while_v1"])
def test_loop_gradients_v1_rebuilt_v2_captured_refused(tmp_path, v2):
    from tensorflow.python.ops import control_flow_v2_toggles

    def build():
        if v2:
            control_flow_v2_toggles.enable_control_flow_v2()
        else:
            control_flow_v2_toggles.disable_control_flow_v2()
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("w", [4, 4])
        _, h = tf.while_loop(lambda i, h: i < 3,
                             lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w))), [0, x])
        tf.identity(h, name="out")

    try:
        gd, values = _save_tf1(tmp_path, build, resource=v2)
    finally:
        control_flow_v2_toggles.enable_control_flow_v2()
    ops = {n.op for n in gd.node}
    assert ("While" in ops) if v2 else ("Enter" in ops)
    reads = ["w:0"] if v2 else ["w/read:0"]
    variables = [VariableBinding("w", reads, "dense.kernel", True, values["w"])]
    x = keras.Input((4,), name="x")
    d = keras.layers.Dense(4, use_bias=False, activation="tanh", name="d")
    model = keras.Model(x, d(d(d(x))))
    d.set_weights([values["w"]])
    lb = LayerBinding("d", "Dense", [], ["x:0"], ["out:0"],
                      [{"variable": "w", "role": "dense.kernel", "weight": "d/kernel"}], True)
    report = V.verify(gd, ["x"], ["out:0"], variables, Conversion(model, [lb], {}))
    assert report["outputs"][0]["status"] == "OK"            # value through the function
    (grad,) = report["gradients"]
    if v2:
        assert grad["status"] == "FAILED"
        assert "captured by 'while' (While)" in grad["reason"]
    else:   # the v1 loop's WhileContext is rebuilt from the graph: tf.gradients works
        assert grad["status"] == "OK", grad
    json.dumps(report, allow_nan=False)


def test_real_converter_output_verifies(tmp_path):
    from tb_varmap.convert.testing import bindings_from_graph

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        with tf.compat.v1.variable_scope("conv", use_resource=True):
            k = tf.compat.v1.get_variable("kernel", [3, 3, 3, 4])
            b = tf.compat.v1.get_variable(
                "bias", [4], initializer=tf.compat.v1.random_normal_initializer())
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, [1, 1, 1, 1], "SAME"), b))
        h = tf.reshape(tf.nn.max_pool2d(h, 2, 2, "VALID"), [-1, 64])
        with tf.compat.v1.variable_scope("fc", use_resource=True):
            w = tf.compat.v1.get_variable("kernel", [64, 5])
        tf.nn.softmax(tf.matmul(h, w), name="probs")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            variables = bindings_from_graph(g, sess, roles={
                "conv/kernel": "conv.kernel", "conv/bias": "conv.bias",
                "fc/kernel": "dense.kernel"})
    gd = g.as_graph_def()
    conv = convert_graph(gd, ["x"], ["probs:0"], variables)
    report = V.verify(gd, ["x"], ["probs:0"], variables, conv)
    assert report["passed"] is True, report["worst"]
    assert len(report["layers"]) == len(conv.layers) >= 3
    assert {g["variable"] for g in report["gradients"]} == {"conv/kernel", "conv/bias",
                                                            "fc/kernel"}
    # the same converted model with one wrong weight: named by the isolated comparison
    wrong = next(lb for lb in conv.layers
                 if any(v["variable"] == "conv/bias" for v in lb.variables))
    weight = next(w for w in conv.model.weights if w.path == next(
        v["weight"] for v in wrong.variables if v["variable"] == "conv/bias"))
    weight.assign(weight.numpy() + 0.01)
    report = V.verify(gd, ["x"], ["probs:0"], variables, conv)
    bad = [r["layer"] for r in report["layers"] if r["isolated"]["status"] != "OK"]
    assert bad == [wrong.layer]


@pytest.mark.parametrize("resource", [False, True], ids=["ref", "resource"])
def test_partitioned_embedding_mod_strategy(tmp_path, resource):
    parts = 3

    def build():
        ids = tf.compat.v1.placeholder(tf.int64, [None, 6], name="ids")
        table = tf.compat.v1.get_variable(
            "emb", [VOCAB, DIM], partitioner=tf.compat.v1.fixed_size_partitioner(parts))
        e = tf.compat.v1.nn.embedding_lookup(table, ids, partition_strategy="mod",
                                             name="lookup")
        tf.reduce_sum(tf.identity(e, name="embedded"), axis=1, name="total")

    gd, values = _save_tf1(tmp_path, build, resource)
    stored = values["emb"]                                  # parts concatenated
    sizes = [len(range(p, VOCAB, parts)) for p in range(parts)]
    offsets = np.cumsum([0] + sizes[:-1])
    rows = np.arange(VOCAB)
    table = stored[offsets[rows % parts] + rows // parts]   # id i: part i % P, row i // P
    nodes = {n.name: n for n in gd.node}
    reads = [f"emb/part_{p}/read:0" if not resource else f"emb/part_{p}:0"
             for p in range(parts)]
    assert all(r.split(":")[0] in nodes for r in reads)
    variables = [VariableBinding("emb", reads, "embedding.table", True, table)]
    for seed in range(5):
        ids = V.make_inputs(gd, ["ids"], variables, seed)["ids"]
        assert ids.min() >= 0 and ids.max() < VOCAB
    x = keras.Input((6,), dtype="int64", name="ids")
    emb = keras.layers.Embedding(VOCAB, DIM, name="emb")
    model = keras.Model(x, keras.ops.sum(emb(x), axis=1))
    emb.set_weights([table])
    lb = LayerBinding("emb", "Embedding", [], ["ids:0"], ["embedded:0"],
                      [{"variable": "emb", "role": "embedding.table",
                        "weight": "emb/embeddings"}], True)
    report = V.verify(gd, ["ids"], ["total:0"], variables, Conversion(model, [lb], {}))
    assert report["passed"] is True, report
    assert report["gradients"][0]["status"] == "OK"
    # the stored (contiguous) layout is not the lookup's: caught
    emb.set_weights([stored])
    report = V.verify(gd, ["ids"], ["total:0"], variables, Conversion(model, [lb], {}))
    assert report["layers"][0]["isolated"]["status"] == "INACCURATE"


def test_weight_the_model_cannot_differentiate_is_failed(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)

    class StopDense(keras.layers.Dense):
        def call(self, inputs):
            y = keras.ops.matmul(inputs, keras.ops.stop_gradient(self.kernel)) + self.bias
            return self.activation(y)

    x = keras.Input((4,), name="x")
    first = StopDense(8, activation="relu", name="dense1")
    h = first(x)
    for i in (2, 3):
        h = conv.model.get_layer(f"dense{i}")(h)
    model = keras.Model(x, h)
    first.set_weights(conv.model.get_layer("dense1").get_weights())
    report = V.verify(gd, ["x"], ["out:0"], variables, Conversion(model, conv.layers, {}))
    assert statuses(report, "isolated") == dict.fromkeys(["dense1", "dense2", "dense3"], "OK")
    # dense2/3 were also called by conv.model: only this model's calls count
    assert statuses(report, "cumulative") == statuses(report, "isolated")
    grads = {g["variable"]: g for g in report["gradients"]}
    assert grads["dense1/kernel"]["status"] == "FAILED"
    assert "no Keras gradient reaches weight(s) ['dense1/kernel']" in \
        grads["dense1/kernel"]["reason"]
    assert grads["dense1/bias"]["status"] == "OK"
    assert report["passed"] is False


def test_shared_layer_bindings_map_to_their_calls(tmp_path):
    """One weight used by two MatMuls -> one Keras layer called twice, bound twice."""
    def build():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("tied/kernel", [4, 4])
        h = tf.tanh(tf.matmul(x, w, name="mm1"), name="act")
        tf.matmul(h, w, name="mm2")

    gd, values = _save_tf1(tmp_path, build)
    variables = [VariableBinding("tied/kernel", ["tied/kernel/read:0"], "dense.kernel", True,
                                 values["tied/kernel"])]
    x = keras.Input((4,), name="x")
    d = keras.layers.Dense(4, use_bias=False, name="tied")
    act = keras.layers.Activation("tanh", name="act")
    model = keras.Model(x, d(act(d(x))))
    d.set_weights([values["tied/kernel"]])
    bound = [{"variable": "tied/kernel", "role": "dense.kernel", "weight": "tied/kernel"}]
    layers = [LayerBinding("tied", "Dense", [], ["x:0"], ["mm1:0"], bound, True),
              LayerBinding("act", "Activation", [], ["mm1:0"], ["act:0"], [], True),
              LayerBinding("tied", "Dense", [], ["act:0"], ["mm2:0"], bound, True)]
    report = V.verify(gd, ["x"], ["mm2:0"], variables, Conversion(model, layers, {}))
    assert report["passed"] is True, report
    assert [r["layer"] for r in report["layers"]] == ["tied", "act", "tied"]
    assert report["gradients"][0]["status"] == "OK"
    # a binding for a call the model does not make is FAILED, the others still compared
    layers.append(LayerBinding("act", "Activation", [], ["mm2:0"], ["mm2:0"], [], True))
    report = V.verify(gd, ["x"], ["mm2:0"], variables, Conversion(model, layers, {}))
    last = report["layers"][-1]
    assert last["isolated"]["status"] == last["cumulative"]["status"] == "FAILED"
    assert "no call of layer 'act'" in last["cumulative"]["reason"]
    assert report["layers"][2]["cumulative"]["status"] == "OK"


# ---------------------------------------------------------------- real TF1-era artifacts

def test_real_charrnn_and_ctc_inputs(real_fixtures):
    from tb_varmap.run import RunData

    rd = RunData(os.path.join(real_fixtures, "charrnn_lstm_tf012"), ".")
    variables = [VariableBinding(i.name, i.read_tensors, "", i.trainable, np.zeros(i.shape))
                 for i in rd.variables() if i.kind == "weight" and i.shape]
    ins, _ = rd.default_io()
    ids = V.make_inputs(rd.graph_def, ins, variables, seed=0)[ins[0]]
    assert ids.dtype == np.int32 and ids.shape == (5, 50)      # placeholder [5, 50]
    assert ids.min() >= 0 and ids.max() < 67                    # rnnlm/embedding [67, 128]

    rd = RunData(os.path.join(real_fixtures, "ctc_conv_lstm_tf11"), ".")
    feed = V.make_inputs(rd.graph_def, ["Placeholder", "Placeholder_4"], [], seed=0)
    # TF 1.1 wrote `shape {}` (unknown): the recorded output shapes are used
    assert feed["Placeholder"].shape == (1, 64, V.UNKNOWN_DIM, 1)
    assert feed["Placeholder_4"].shape == (1,)                  # batch fixed by the images
    assert 1 <= feed["Placeholder_4"][0] <= V.UNKNOWN_DIM


@pytest.mark.slow
def test_real_charrnn_export_verifies_and_logs(real_fixtures):
    """The real TF 0.12 char-RNN through the whole export: verified and logged (~2 min)."""
    import tb_varmap
    from tb_varmap import summaries as S

    logdir = os.path.join(real_fixtures, "charrnn_lstm_tf012")
    _, report = tb_varmap.export(logdir, ".", verify=True)
    ver = report["verification"]
    assert ver["passed"] is True, ver["worst"]
    assert len(ver["gradients"]) == 7 and all(g["status"] == "OK" for g in ver["gradients"])
    assert S.read_report(logdir)["verification"]["passed"] is True


def test_gradients_through_a_re_laid_out_weight(tmp_path):
    """A Keras weight stored transposed, and a bias with a constant folded in (as for LSTM
    gates and forget_bias): gradients are traced back to the variable's layout."""
    def build():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        w = tf.compat.v1.get_variable("odd/kernel", [4, 3])
        b = tf.compat.v1.get_variable(
            "odd/bias", [3], initializer=tf.compat.v1.random_normal_initializer())
        tf.nn.bias_add(tf.matmul(x, w), b + 1.0, name="y")

    gd, values = _save_tf1(tmp_path, build)

    class Odd(keras.layers.Layer):
        def build(self, shape):
            self.k = self.add_weight(shape=(3, 4), name="kernel_t")
            self.b = self.add_weight(shape=(3,), name="bias_plus_2")

        def call(self, x):
            return keras.ops.matmul(x, keras.ops.transpose(self.k)) + self.b - 1.0

    x = keras.Input((4,), name="x")
    odd = Odd(name="odd")
    model = keras.Model(x, odd(x))
    odd.set_weights([values["odd/kernel"].T, values["odd/bias"] + 2.0])
    variables = [VariableBinding(k, [k + "/read:0"], "custom.param", True, values[k])
                 for k in ("odd/kernel", "odd/bias")]
    lb = LayerBinding("odd", "Odd", [], ["x:0"], ["y:0"],
                      [{"variable": "odd/kernel", "role": "custom.param",
                        "weight": "odd/kernel_t"},
                       {"variable": "odd/bias", "role": "custom.param",
                        "weight": "odd/bias_plus_2"}], False)
    report = V.verify(gd, ["x"], ["y:0"], variables, Conversion(model, [lb], {}))
    assert report["passed"] is True, report
    assert [g["status"] for g in report["gradients"]] == ["OK", "OK"]
    # the trace-back maps values, not positions: a wrong gradient still shows
    for i, j in [(0, 1)]:
        k = values["odd/kernel"].T.copy()
        k[:, [i, j]] = k[:, [j, i]]                 # two input columns swapped
        odd.set_weights([k, values["odd/bias"] + 2.0])
        report = V.verify(gd, ["x"], ["y:0"], variables, Conversion(model, [lb], {}))
        grads = {g["variable"]: g["status"] for g in report["gradients"]}
        assert report["layers"][0]["isolated"]["status"] == "INACCURATE"
        assert grads["odd/kernel"] == "INACCURATE"


# ---------------------------------------------------------------- gradient tolerance

def test_gradient_tolerance_is_relative_to_the_tensor():
    """An element that sums large terms to ~0 carries rounding error of the terms' size:
    gradients pass within atol + rtol * max|original| (stated as `tolerance`)."""
    g = np.array([10.0, -4.0, 1e-3, 0.0], np.float32)
    near = g + np.array([0, 0, 5e-5, -5e-5], np.float32)   # 5e-6 of max|g|
    assert V.compare(near, g)["status"] == "INACCURATE"       # element-wise: too tight
    row = V.compare_gradient(near, g)
    assert row["status"] == "OK" and row["tolerance"] == pytest.approx(1e-5 + 1e-5 * 10)
    wrong = g.copy()
    wrong[2] += 2e-3                                           # 2e-4 of max|g|: a real error
    assert V.compare_gradient(wrong, g)["status"] == "INACCURATE"
    assert V.compare_gradient(np.zeros(3), np.zeros(3))["tolerance"] == pytest.approx(1e-5)


def test_grouped_gradients_with_values_closer_than_rounding():
    """Equal values in a kernel are compared per distinct value; values closer than float32
    rounding (thousands in a [256, 512] kernel) still land on their own value."""
    rng = np.random.default_rng(0)
    flat = (0.25 + np.arange(40) * 1e-9).astype(np.float64)   # 1e-9 apart, eps*0.25 = 3e-8
    flat = np.concatenate([flat, flat[:3], rng.standard_normal(20)])   # 3 values twice
    perm = rng.permutation(flat.size)
    grad = rng.standard_normal(flat.size)
    got = V._grouped(flat, flat[perm], grad[perm])
    assert got is not None
    want = np.bincount(got.groups, weights=grad, minlength=got.sums.size)
    np.testing.assert_allclose(got.sums, want)
    assert V._grouped(flat, flat[perm][:-1], grad[perm][:-1]) is None   # a value missing


T, N_IN, UNITS = 12, 5, 6


def _build_unrolled_lstm():
    """BasicLSTMCell by hand: W [in+u, 4u] (gates i, j, f, o), forget_bias 1.0, unrolled."""
    x = tf.compat.v1.placeholder(tf.float32, [None, T, N_IN], name="x")
    w = tf.compat.v1.get_variable("lstm/kernel", [N_IN + UNITS, 4 * UNITS])
    b = tf.compat.v1.get_variable("lstm/bias", [4 * UNITS],
                                  initializer=tf.compat.v1.random_normal_initializer())
    c = h = tf.zeros([tf.shape(x)[0], UNITS])
    hs = []
    for t in range(T):
        z = tf.matmul(tf.concat([x[:, t], h], 1), w) + b
        i, j, f, o = tf.split(z, 4, axis=1)
        c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
        h = tf.tanh(c) * tf.sigmoid(o)
        hs.append(h)
    tf.stack(hs, axis=1, name="y")


def _gates(m, order):
    """Columns of m ([..., 4u]) as blocks in `order` (indices into m's 4 gate blocks)."""
    return np.concatenate([m[..., k * UNITS:(k + 1) * UNITS] for k in order], axis=-1)


def test_swapped_lstm_gate_block_is_caught_by_gradients(tmp_path):
    """A converted LSTM passes under the norm-wise gradient rule; the same model with two
    gate blocks of its kernels swapped (values all present, so the gradient is still traced
    back by value) is INACCURATE in the kernel's gradient row, far past its tolerance."""
    gd, values = _save_tf1(tmp_path, _build_unrolled_lstm)
    variables = [VariableBinding(k, [k + "/read:0"], "lstm." + k.split("/")[1], True,
                                 values[k]) for k in ("lstm/bias", "lstm/kernel")]
    x = keras.Input((T, N_IN), name="x")
    lstm = keras.layers.LSTM(UNITS, return_sequences=True, name="lstm")
    model = keras.Model(x, lstm(x))
    w, b = values["lstm/kernel"], values["lstm/bias"]
    keras_order = [0, 2, 1, 3]                   # TF i, j, f, o -> Keras i, f, c(=j), o
    bias = _gates(b, keras_order)
    bias[UNITS:2 * UNITS] += 1.0                 # forget_bias folded in
    lb = LayerBinding("lstm", "LSTM", [], ["x:0"], ["y:0"],
                      [{"variable": "lstm/kernel", "role": "lstm.kernel",
                        "weight": "lstm/lstm_cell/kernel"},
                       {"variable": "lstm/kernel", "role": "lstm.kernel",
                        "weight": "lstm/lstm_cell/recurrent_kernel"},
                       {"variable": "lstm/bias", "role": "lstm.bias",
                        "weight": "lstm/lstm_cell/bias"}], True)

    def run(order):
        lstm.set_weights([_gates(w[:N_IN], order), _gates(w[N_IN:], order), bias])
        report = V.verify(gd, ["x"], ["y:0"], variables, Conversion(model, [lb], {}))
        return report, {g["variable"]: g for g in report["gradients"]}

    report, grads = run(keras_order)
    assert report["passed"] is True, report["gradients"]
    assert "max|original gradient|" in report["gradient_tolerance"]
    for row in grads.values():
        assert row["status"] == "OK" and row["max_abs"] <= row["tolerance"], row
    report, grads = run([2, 0, 1, 3])            # input and forget gate blocks swapped
    row = grads["lstm/kernel"]
    assert row["status"] == "INACCURATE", row
    assert row["max_abs"] > 100 * row["tolerance"], row
    assert report["passed"] is False
