"""The generated demo model_dirs hold what they claim: graphs, checkpoints, slots, op types."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework.variable_pb2 import VariableDef
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from tb_varmap.demo.generate import generate, run_name
from tb_varmap.demo.tf1_models import MODELS, sample_feed
from tb_varmap.errors import BadInput

v1 = tf.compat.v1
CORE = [n for n, s in MODELS.items() if not (s.zoo or s.legacy)]
ZOO = [n for n, s in MODELS.items() if s.zoo]
RUNS = [(m, v) for m in CORE for v in ("ref", "resource")]

# Model weights (not slots/counters) each model must have: checkpoint key -> shape.
WEIGHTS = {
    "dense_nobias": {"dense/kernel": [10, 5]},
    "conv_bias": {"conv/kernel": [3, 3, 3, 32], "conv/bias": [32]},
    "custom_sigmoid": {"param": []},
    "cnn_bn_adam": {
        "model/conv1/kernel": [3, 3, 3, 8], "model/conv1/bias": [8],
        "model/bn1/gamma": [8], "model/bn1/beta": [8],
        "model/bn1/moving_mean": [8], "model/bn1/moving_variance": [8],
        "model/conv2/kernel": [3, 3, 8, 16], "model/conv2/bias": [16],
        "model/bn2/gamma": [16], "model/bn2/beta": [16],
        "model/bn2/moving_mean": [16], "model/bn2/moving_variance": [16],
        "model/logits/kernel": [16, 10], "model/logits/bias": [10]},
    "mlp_estimator_style": {
        "dnn/hiddenlayer_0/kernel": [6, 16], "dnn/hiddenlayer_0/bias": [16],
        "dnn/logits/kernel": [16, 3], "dnn/logits/bias": [3]},
    "partitioned_embedding": {"embedding": [10, 4], "fc/weights": [4, 3], "fc/biases": [3]},
}


def events(path_glob):
    out = []
    for path in sorted(glob.glob(path_glob)):
        out += list(v1.train.summary_iterator(path))
    return out


def graph_def_of(model_dir):
    """The GraphDef as TensorBoard would find it: event file, else graph.pbtxt."""
    for ev in events(os.path.join(model_dir, "events.out.tfevents.*")):
        if ev.graph_def:
            return tf.compat.v1.GraphDef.FromString(ev.graph_def)
    gd = tf.compat.v1.GraphDef()
    with open(os.path.join(model_dir, "graph.pbtxt")) as f:
        text_format.Parse(f.read(), gd)
    return gd


def run_model(model_dir, feed, fetches, step=None):
    """Restore the .meta graph + checkpoint in a fresh graph and run `fetches`."""
    prefix = (tf.train.latest_checkpoint(model_dir) if step is None
              else os.path.join(model_dir, f"model.ckpt-{step}"))
    with tf.Graph().as_default() as g, v1.Session(graph=g) as sess:
        saver = v1.train.import_meta_graph(prefix + ".meta")
        saver.restore(sess, prefix)
        return sess.run(fetches, {k + ":0": v for k, v in feed.items()})


def ckpt(model_dir, step=None):
    prefix = (tf.train.latest_checkpoint(model_dir) if step is None
              else os.path.join(model_dir, f"model.ckpt-{step}"))
    return tf.train.load_checkpoint(prefix)


@pytest.mark.parametrize("model,variant", RUNS)
def test_model_dir_has_graph_checkpoint_and_state_file(tf1_models_dir, model, variant):
    spec = MODELS[model]
    d = os.path.join(tf1_models_dir, run_name(model, variant))
    for step in spec.steps:
        for ext in (".index", ".meta", ".data-00000-of-00001"):
            assert os.path.exists(os.path.join(d, f"model.ckpt-{step}{ext}"))
    with open(os.path.join(d, "checkpoint")) as f:     # relative paths: the dir can move
        state = text_format.Parse(f.read(), CheckpointState())
    assert state.model_checkpoint_path == f"model.ckpt-{spec.step}"
    assert list(state.all_model_checkpoint_paths) == [f"model.ckpt-{s}" for s in spec.steps]
    graph_events = [e for e in events(os.path.join(d, "events.out.tfevents.*")) if e.graph_def]
    if spec.graph_source == "events":
        assert graph_events and not os.path.exists(os.path.join(d, "graph.pbtxt"))
    else:
        assert not graph_events and os.path.exists(os.path.join(d, "graph.pbtxt"))
    names = {n.name for n in graph_def_of(d).node}
    assert set(spec.inputs) <= names
    assert {t.split(":")[0] for t in spec.outputs} <= names


@pytest.mark.parametrize("model,variant", RUNS)
def test_checkpoint_keys_shapes_and_trainable_collection(tf1_models_dir, model, variant):
    d = os.path.join(tf1_models_dir, run_name(model, variant))
    reader = ckpt(d)
    shapes = reader.get_variable_to_shape_map()
    for key, shape in WEIGHTS[model].items():
        assert shapes.get(key) == shape, f"{model}: {key}"
    extra = set(shapes) - set(WEIGHTS[model])
    if model == "cnn_bn_adam":
        assert extra - {"global_step", "beta1_power", "beta2_power"} == {
            f"{k}/Adam{s}" for k in WEIGHTS[model] if "moving" not in k for s in ("", "_1")}
    elif MODELS[model].step > 1:
        assert extra == {"global_step"}
    else:
        assert extra == set()
    mg = v1.MetaGraphDef()
    with open(tf.train.latest_checkpoint(d) + ".meta", "rb") as f:
        mg.ParseFromString(f.read())
    trainable = set()
    for raw in mg.collection_def["trainable_variables"].bytes_list.value:
        var = VariableDef.FromString(raw)
        trainable.add(var.variable_name.split(":")[0])
    expected = {k for k in WEIGHTS[model] if "moving" not in k}
    if model == "partitioned_embedding":   # partitions are the trainable variables
        expected = (expected - {"embedding"}) | {f"embedding/part_{i}" for i in range(3)}
    assert trainable == expected


@pytest.mark.parametrize("model", CORE)
def test_ref_and_resource_variants_use_their_op_types(tf1_models_dir, model):
    ref = graph_def_of(os.path.join(tf1_models_dir, run_name(model, "ref")))
    res = graph_def_of(os.path.join(tf1_models_dir, run_name(model, "resource")))
    ref_ops = {n.op for n in ref.node}
    res_ops = {n.op for n in res.node}
    assert "VariableV2" in ref_ops and not {"VarHandleOp", "ReadVariableOp"} & ref_ops
    assert {"VarHandleOp", "ReadVariableOp"} <= res_ops and "VariableV2" not in res_ops
    ref_nodes = {n.name: n for n in ref.node}
    for key in WEIGHTS[model]:
        if key == "embedding":
            key = "embedding/part_0"
        assert ref_nodes[key].op == "VariableV2"
        assert ref_nodes[key + "/read"].op == "Identity"
        assert {n.name: n.op for n in res.node}[key] == "VarHandleOp"


def test_cnn_bn_adam_trained_with_adam_and_updated_moving_stats(tf1_models_dir):
    d = os.path.join(tf1_models_dir, "cnn_bn_adam")
    late, early = ckpt(d, 5), ckpt(d, 2)
    assert late.get_tensor("global_step") == 5 and early.get_tensor("global_step") == 2
    np.testing.assert_allclose(late.get_tensor("beta1_power"), 0.9 ** 6, rtol=1e-5)
    np.testing.assert_allclose(late.get_tensor("beta2_power"), 0.999 ** 6, rtol=1e-5)
    for bn in ("bn1", "bn2"):
        mean = late.get_tensor(f"model/{bn}/moving_mean")
        assert np.abs(mean).max() > 0                      # moved away from zeros
        assert not np.allclose(mean, early.get_tensor(f"model/{bn}/moving_mean"))
        assert np.abs(late.get_tensor(f"model/conv1/kernel/Adam")).max() > 0
    ops = {n.op for n in graph_def_of(d).node}
    assert {"FusedBatchNormV3", "Rsqrt", "MaxPool", "AvgPool", "Softmax", "ApplyAdam"} <= ops
    losses = [(e.step, v.simple_value) for e in events(os.path.join(d, "events.*"))
              for v in e.summary.value if v.tag == "loss"]
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5]


def test_cnn_inference_output_uses_moving_statistics(tf1_models_dir):
    d = os.path.join(tf1_models_dir, "cnn_bn_adam")
    feed = sample_feed("cnn_bn_adam", batch=3)
    probs, bn1, pre = run_model(d, feed, ["probs:0", "model/bn1/FusedBatchNormV3:0",
                                          "model/conv1/BiasAdd:0"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    r = ckpt(d)
    g, b, m, v = (r.get_tensor(f"model/bn1/{k}")
                  for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    np.testing.assert_allclose(bn1, (pre - m) / np.sqrt(v + 1e-3) * g + b, atol=1e-5)
    # batch size must not change a row's output (no batch statistics in inference)
    one = run_model(d, {"x": feed["x"][:1]}, "probs:0")
    np.testing.assert_allclose(one[0], probs[0], atol=1e-6)


def test_seed_models_compute_what_they_claim(tf1_models_dir):
    d = os.path.join(tf1_models_dir, "dense_nobias")
    x = sample_feed("dense_nobias")["x"]
    np.testing.assert_allclose(run_model(d, {"x": x}, "y:0"),
                               x @ ckpt(d).get_tensor("dense/kernel"), rtol=1e-5, atol=1e-6)
    d = os.path.join(tf1_models_dir, "custom_sigmoid_resource")
    x = sample_feed("custom_sigmoid")["x"]
    assert ckpt(d).get_tensor("param") == np.float32(0.75)
    np.testing.assert_allclose(run_model(d, {"x": x}, "y:0"), 1 / (1 + np.exp(-0.75 * x)),
                               rtol=1e-5)
    d = os.path.join(tf1_models_dir, "conv_bias")
    x = sample_feed("conv_bias")["x"]
    r = ckpt(d)
    want = tf.nn.relu(tf.nn.conv2d(x, r.get_tensor("conv/kernel"), 1, "SAME")
                      + r.get_tensor("conv/bias")).numpy()
    np.testing.assert_allclose(run_model(d, {"x": x}, "y:0"), want, atol=1e-5)


def test_partitioned_embedding_uses_mod_strategy(tf1_models_dir):
    d = os.path.join(tf1_models_dir, "partitioned_embedding")
    gd = graph_def_of(d)
    shapes = {n.name: [dim.size for dim in n.attr["shape"].shape.dim]
              for n in gd.node if n.op == "VariableV2"}
    assert [shapes[f"embedding/part_{i}"] for i in range(3)] == [[4, 4], [3, 4], [3, 4]]
    full = ckpt(d).get_tensor("embedding")             # partitions concatenated, [10, 4]
    starts = [0, 4, 7]
    mod_table = np.stack([full[starts[i % 3] + i // 3] for i in range(10)])
    ids = np.arange(10).reshape(2, 5)
    emb = run_model(d, {"ids": ids}, "embedded:0")
    np.testing.assert_allclose(emb, mod_table[ids], atol=1e-6)
    assert not np.allclose(emb, full[ids])              # the naive join is wrong


def test_estimator_style_dir_has_pbtxt_and_eval_scalars_only(tf1_models_dir):
    d = os.path.join(tf1_models_dir, "mlp_estimator_style")
    train = events(os.path.join(d, "events.*"))
    assert not any(e.graph_def or e.meta_graph_def for e in train)
    assert [e.step for e in train if any(v.tag == "loss" for v in e.summary.value)] == list(
        range(1, 11))
    ev = events(os.path.join(d, "eval", "events.*"))
    assert os.listdir(os.path.join(d, "eval")) and not any(e.graph_def for e in ev)
    assert [(e.step, v.tag) for e in ev for v in e.summary.value] == [(10, "loss")]
    probs = run_model(d, sample_feed("mlp_estimator_style", batch=4), "probs:0")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("model", ["dense_nobias", "conv_bias", "custom_sigmoid"])
def test_ref_and_resource_seed_models_hold_equal_values(tf1_models_dir, model):
    a, b = (ckpt(os.path.join(tf1_models_dir, run_name(model, v))) for v in ("ref", "resource"))
    for key in WEIGHTS[model]:
        np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key))


def test_generation_is_deterministic(tf1_models_dir, tmp_path):
    models = ["cnn_bn_adam", "partitioned_embedding"]
    again = generate(str(tmp_path), models=models, variants=("ref", "resource"))
    assert sorted(again) == sorted(run_name(m, v) for m in models for v in ("ref", "resource"))
    for name, path in again.items():
        first = os.path.join(tf1_models_dir, name)
        a, b = ckpt(first), ckpt(path)
        assert a.get_variable_to_shape_map() == b.get_variable_to_shape_map()
        for key in a.get_variable_to_shape_map():
            np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key), err_msg=key)
        model = name.replace("_resource", "")
        feed = sample_feed(model, batch=3)
        out = MODELS[model].outputs
        np.testing.assert_array_equal(run_model(first, feed, out), run_model(path, feed, out))


def test_generate_rejects_unknown_model_and_variant(tmp_path):
    with pytest.raises(BadInput, match="nope"):
        generate(str(tmp_path), models=["nope"])
    with pytest.raises(BadInput, match="sideways"):
        generate(str(tmp_path), models=["dense_nobias"], variants=("sideways",))
    assert os.listdir(tmp_path) == []


def test_zoo_models_build_and_run(zoo_models_dir):
    assert sorted(os.listdir(zoo_models_dir)) == sorted(ZOO)
    for name in ZOO:
        d = os.path.join(zoo_models_dir, name)
        y = run_model(d, sample_feed(name, batch=2), "y:0")
        assert y.shape[0] == 2 and np.isfinite(y).all(), name
    ops = {n.op for name in ZOO for n in graph_def_of(os.path.join(zoo_models_dir, name)).node}
    assert {"Conv2DBackpropInput", "DepthwiseConv2dNative", "Pad", "ConcatV2", "Transpose",
            "Relu6", "Elu", "Selu", "Softplus", "LeakyRelu", "Mean", "Sum", "Max"} <= ops


def test_copy_model_fixture_gives_writable_copy(copy_model, tf1_models_dir):
    path = copy_model("dense_nobias_resource")
    assert os.path.basename(path) == "dense_nobias_resource"
    open(os.path.join(path, "scratch"), "w").close()
    assert not os.path.exists(os.path.join(tf1_models_dir, "dense_nobias_resource", "scratch"))
    with pytest.raises(LookupError, match="no_such_model"):
        copy_model("no_such_model")


def test_real_fixtures_copy_is_writable(real_fixtures):
    assert os.path.isfile(os.path.join(real_fixtures, "charrnn_lstm_tf012", "model.ckpt-46499.index"))
    open(os.path.join(real_fixtures, "charrnn_lstm_tf012", "scratch"), "w").close()


DEMO_LOGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "demo_logs")


def test_committed_demo_logs_match_the_generator(tf1_models_dir, legacy_models_dir):
    runs = sorted(n for n in os.listdir(DEMO_LOGS) if os.path.isdir(os.path.join(DEMO_LOGS, n)))
    assert set(CORE) <= set(runs)
    assert any(r.endswith("_resource") for r in runs)
    assert "graph.pbtxt" in os.listdir(os.path.join(DEMO_LOGS, "mlp_estimator_style"))
    assert os.path.isdir(os.path.join(DEMO_LOGS, "mlp_estimator_style", "eval"))
    for run in runs:       # same values as a fresh generation: demo_logs is not stale
        fresh = legacy_models_dir if run.startswith("legacy_") else tf1_models_dir
        a, b = ckpt(os.path.join(DEMO_LOGS, run)), ckpt(os.path.join(fresh, run))
        assert a.get_variable_to_shape_map() == b.get_variable_to_shape_map(), run
        for key in a.get_variable_to_shape_map():
            np.testing.assert_allclose(a.get_tensor(key), b.get_tensor(key), rtol=1e-5,
                                       atol=1e-6, err_msg=f"{run}: {key}")


@pytest.mark.slow
def test_make_demo_logs_script_replaces_the_folder(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "logs"
    (out / "stale_run").mkdir(parents=True)
    script = os.path.join(os.path.dirname(DEMO_LOGS), "scripts", "make_demo_logs.py")
    subprocess.run([sys.executable, script, "--out", str(out)], check=True,
                   capture_output=True)
    names = set(os.listdir(out))
    assert "stale_run" not in names and {"README.md", "cnn_bn_adam_resource"} <= names
    assert not os.path.exists(str(out) + ".tmp") and not os.path.exists(str(out) + ".old")


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _lstm_numpy(x, r):
    """BasicLSTMCell: [x, h] @ W + b split i, j, f, o; forget_bias 1.0 added at run time."""
    w, b = r.get_tensor("rnn/basic_lstm_cell/kernel"), r.get_tensor("rnn/basic_lstm_cell/bias")
    h = c = np.zeros((x.shape[0], 8), np.float32)
    for t in range(x.shape[1]):
        i, j, f, o = np.split(np.concatenate([x[:, t], h], 1) @ w + b, 4, axis=1)
        c = c * _sigmoid(f + 1.0) + _sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * _sigmoid(o)
    return h


def _gru_numpy(x, r):
    """GRUCell: gates r, u from [x, h]; candidate from [x, r * h]; h = u * h + (1 - u) * c."""
    g = {k: r.get_tensor(f"rnn/gru_cell/{k}") for k in
         ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias")}
    h = np.zeros((x.shape[0], 6), np.float32)
    for t in range(x.shape[1]):
        rg, u = np.split(_sigmoid(np.concatenate([x[:, t], h], 1) @ g["gates/kernel"]
                                  + g["gates/bias"]), 2, axis=1)
        c = np.tanh(np.concatenate([x[:, t], rg * h], 1) @ g["candidate/kernel"]
                    + g["candidate/bias"])
        h = u * h + (1 - u) * c
    return h


@pytest.mark.parametrize("variant", ["ref", "resource"])
@pytest.mark.parametrize("model,cell", [("legacy_lstm", _lstm_numpy), ("legacy_gru", _gru_numpy)])
def test_legacy_rnn_models_follow_the_documented_gate_layout(legacy_models_dir, model, cell,
                                                             variant):
    d = os.path.join(legacy_models_dir, run_name(model, variant))
    r = ckpt(d)
    x = sample_feed(model, batch=3)["x"]
    want = cell(x, r) @ r.get_tensor("head/kernel") + r.get_tensor("head/bias")
    np.testing.assert_allclose(run_model(d, {"x": x}, "y:0"), want, atol=1e-5)
    assert np.abs(r.get_tensor(f"rnn/{'basic_lstm_cell' if 'lstm' in model else 'gru_cell/gates'}"
                               "/bias")).min() > 0       # nothing trivially zero
    ops = {n.op for n in graph_def_of(d).node}
    assert ("VariableV2" in ops) == (variant == "ref")


def test_legacy_slim_cnn_has_no_gamma_and_layer_norm_over_all_axes(legacy_models_dir):
    d = os.path.join(legacy_models_dir, "legacy_slim_cnn")
    r = ckpt(d)
    assert "conv/BatchNorm/gamma" not in r.get_variable_to_shape_map()   # slim: scale=False
    x = sample_feed("legacy_slim_cnn", batch=2)["x"]
    z = tf.nn.conv2d(x, r.get_tensor("conv/weights"), 1, "SAME").numpy()
    bn = (z - r.get_tensor("conv/BatchNorm/moving_mean")) / np.sqrt(
        r.get_tensor("conv/BatchNorm/moving_variance") + 1e-3) + r.get_tensor("conv/BatchNorm/beta")
    h = np.maximum(bn, 0)
    m, v = h.mean(axis=(1, 2, 3), keepdims=True), h.var(axis=(1, 2, 3), keepdims=True)
    h = (h - m) / np.sqrt(v + 1e-12) * r.get_tensor("ln/gamma") + r.get_tensor("ln/beta")
    want = h.reshape(2, -1) @ r.get_tensor("fc/weights") + r.get_tensor("fc/biases")
    np.testing.assert_allclose(run_model(d, {"x": x}, "y:0"), want, atol=1e-4)
    ops = {n.op for n in graph_def_of(d).node}
    assert {"FusedBatchNormV3", "Rsqrt", "Conv2D"} <= ops


def test_legacy_models_need_the_legacy_subprocess(tmp_path):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.path.dirname(DEMO_LOGS)
    proc = subprocess.run([sys.executable, "-m", "tb_varmap.demo.generate", "--out",
                           str(tmp_path), "--models", "legacy_lstm"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "TF_USE_LEGACY_KERAS=1" in proc.stderr
