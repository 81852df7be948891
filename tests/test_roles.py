"""Role vocabulary, shape checks and inference on real TF-written graphs."""
import os

import pytest
import tensorflow as tf

from tb_varmap.ir import GraphIR
from tb_varmap.link import link_variables
from tb_varmap.roles import ROLES, check_role_shape, infer_roles, name_hint
from tb_varmap.run import RunData

v1 = tf.compat.v1


def _roles_of(graph, shapes=None):
    ir = GraphIR(graph.as_graph_def())
    infos = link_variables(ir, shapes)
    return {k: g for k, g in infer_roles(ir, infos).items()}, {i.name: i for i in infos}


def _role_map(guesses):
    return {k: g.role for k, g in guesses.items()}


# -- vocabulary ------------------------------------------------------------------------
def test_vocabulary_and_shape_checks():
    for name in ("dense.kernel", "conv.bias", "bn.moving_variance", "embedding.table", "lstm.kernel",
                 "gru.candidate_bias", "custom.param", "constant", "ignore", "separable.pointwise"):
        assert ROLES[name].name == name
    assert not ROLES["bn.moving_mean"].trainable and ROLES["custom.param"].trainable
    assert check_role_shape("dense.kernel", [10, 5]) is None
    assert check_role_shape("conv.kernel", [10, 5]) == "role 'conv.kernel' needs rank 4, variable has shape [10, 5]"
    assert "divisible by 4" in check_role_shape("lstm.kernel", [8, 6])
    assert "1x1" in check_role_shape("separable.pointwise", [3, 3, 4, 5])
    assert check_role_shape("custom.param", [2, 3, 4, 5, 6]) is None
    assert "unknown role" in check_role_shape("dense.weights", [1])


# -- demo models (conftest generates them with TF in a subprocess) --------------------
EXPECTED = {
    "dense_nobias": {"dense/kernel": "dense.kernel"},
    "conv_bias": {"conv/kernel": "conv.kernel", "conv/bias": "conv.bias"},
    "custom_sigmoid": {"param": "custom.param"},
    "mlp_estimator_style": {"dnn/hiddenlayer_0/kernel": "dense.kernel", "dnn/hiddenlayer_0/bias": "dense.bias",
                            "dnn/logits/kernel": "dense.kernel", "dnn/logits/bias": "dense.bias",
                            "global_step": "ignore"},
    "partitioned_embedding": {"embedding": "embedding.table", "fc/weights": "dense.kernel",
                              "fc/biases": "dense.bias"},
    "cnn_bn_adam": {
        "model/conv1/kernel": "conv.kernel", "model/conv1/bias": "conv.bias",
        "model/bn1/gamma": "bn.gamma", "model/bn1/beta": "bn.beta",  # fused
        "model/bn1/moving_mean": "bn.moving_mean", "model/bn1/moving_variance": "bn.moving_variance",
        "model/bn2/gamma": "bn.gamma", "model/bn2/beta": "bn.beta",  # unfused
        "model/bn2/moving_mean": "bn.moving_mean", "model/bn2/moving_variance": "bn.moving_variance",
        "model/logits/kernel": "dense.kernel", "model/logits/bias": "dense.bias",
        "model/conv1/kernel/Adam": "ignore", "beta1_power": "ignore", "global_step": "ignore",
    },
}


@pytest.mark.parametrize("variant", ["", "_resource"])
@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_demo_model_roles(tf1_models_dir, model, variant):
    run = RunData(tf1_models_dir, model + variant)
    roles = run.roles()
    got = {name: roles[name].role for name in EXPECTED[model]}
    assert got == EXPECTED[model]
    weights = [v for v in run.variables() if v.kind == "weight"]
    assert all(roles[v.name].role not in (None, "ignore") for v in weights)


def test_layers_pair_kernel_and_bias(tf1_models_dir):
    roles = RunData(tf1_models_dir, "cnn_bn_adam_resource").roles()
    assert roles["model/conv1/kernel"].layer == roles["model/conv1/bias"].layer
    assert roles["model/logits/kernel"].layer == roles["model/logits/bias"].layer == "model/logits"
    assert roles["model/bn1/gamma"].layer == roles["model/bn1/moving_variance"].layer
    assert roles["model/bn2/gamma"].layer == roles["model/bn2/beta"].layer == "model/bn2"
    assert "model/logits/MatMul" in roles["model/logits/kernel"].consumers
    assert roles["model/logits/kernel"].reason == "MatMul input 1"
    assert roles["model/conv1/kernel"].confidence > roles["model/bn2/gamma"].confidence > 0.5


def test_partition_strategy_is_recorded(tf1_models_dir):
    run = RunData(tf1_models_dir, "partitioned_embedding")
    assert run.roles()["embedding"].partition_strategy == "mod"
    assert run.variable("embedding").partition_strategy == "mod"


@pytest.mark.parametrize("model,expected", [
    ("zoo_conv_transpose", {"deconv/kernel": "conv_transpose.kernel", "deconv/bias": "conv_transpose.bias"}),
    ("zoo_depthwise", {"depthwise/depthwise_kernel": "depthwise.kernel"}),
    ("zoo_separable", {"separable/depthwise_kernel": "separable.depthwise",
                       "separable/pointwise_kernel": "separable.pointwise", "separable/bias": "separable.bias"}),
])
def test_zoo_roles(zoo_models_dir, model, expected):
    roles = RunData(zoo_models_dir, model).roles()
    assert {k: roles[k].role for k in expected} == expected
    if model == "zoo_separable":
        assert len({roles[k].layer for k in expected}) == 1


# -- graphs built here with raw ops -----------------------------------------------------
def _cell_graph(kind, use_resource):
    """One step of an LSTM / GRU cell written as BasicLSTMCell / GRUCell write it."""
    g = tf.Graph()
    units, n_in = 3, 2
    with g.as_default(), v1.variable_scope("rnn/cell", use_resource=use_resource):
        x = v1.placeholder(tf.float32, [None, n_in], name="x")
        h = v1.placeholder_with_default(tf.zeros([1, units]), [None, units], name="h")
        xh = tf.concat([x, h], 1)
        if kind == "lstm":
            w = v1.get_variable("kernel", [n_in + units, 4 * units])
            b = v1.get_variable("bias", [4 * units])
            i, j, f, o = tf.split(tf.nn.bias_add(tf.matmul(xh, w), b), 4, axis=1)
            c = tf.sigmoid(f + 1.0) * 0.0 + tf.sigmoid(i) * tf.tanh(j)
            tf.identity(tf.tanh(c) * tf.sigmoid(o), name="out")
        else:
            with v1.variable_scope("gates"):
                wg = v1.get_variable("kernel", [n_in + units, 2 * units])
                bg = v1.get_variable("bias", [2 * units])
                r, u = tf.split(tf.sigmoid(tf.nn.bias_add(tf.matmul(xh, wg), bg)), 2, axis=1)
            with v1.variable_scope("candidate"):
                wc = v1.get_variable("kernel", [n_in + units, units])
                bc = v1.get_variable("bias", [units])
                cand = tf.tanh(tf.nn.bias_add(tf.matmul(tf.concat([x, r * h], 1), wc), bc))
            tf.identity(u * h + (1 - u) * cand, name="out")
    return g


@pytest.mark.parametrize("use_resource", [False, True])
def test_lstm_cell(use_resource):
    guesses, _ = _roles_of(_cell_graph("lstm", use_resource))
    assert _role_map(guesses) == {"rnn/cell/kernel": "lstm.kernel", "rnn/cell/bias": "lstm.bias"}
    assert guesses["rnn/cell/kernel"].layer == guesses["rnn/cell/bias"].layer


@pytest.mark.parametrize("use_resource", [False, True])
def test_gru_cell(use_resource):
    guesses, _ = _roles_of(_cell_graph("gru", use_resource))
    assert _role_map(guesses) == {
        "rnn/cell/gates/kernel": "gru.gates_kernel", "rnn/cell/gates/bias": "gru.gates_bias",
        "rnn/cell/candidate/kernel": "gru.candidate_kernel", "rnn/cell/candidate/bias": "gru.candidate_bias"}


def test_layer_norm_vs_batch_norm():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 6], name="x")
        with v1.variable_scope("ln"):
            gamma = v1.get_variable("gamma", [6], initializer=v1.ones_initializer())
            beta = v1.get_variable("beta", [6], initializer=v1.zeros_initializer())
            mean, var = tf.nn.moments(x, axes=[1], keepdims=True, name="moments")
            y = tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-12, name="batchnorm")
        with v1.variable_scope("norm_b"):
            scale = v1.get_variable("scale_param", [6])
            offset = v1.get_variable("offset_param", [6])
            mean, var = tf.nn.moments(y, axes=[0], name="moments")
            y = tf.nn.batch_normalization(y, mean, var, offset, scale, 1e-3, name="batchnorm")
        tf.identity(y, name="out")
    guesses, _ = _roles_of(g)
    assert _role_map(guesses) == {"ln/gamma": "ln.gamma", "ln/beta": "ln.beta",
                                  "norm_b/scale_param": "bn.gamma", "norm_b/offset_param": "bn.beta"}
    assert guesses["ln/gamma"].layer == "ln"


def test_while_v2_body_and_function_call():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        with v1.variable_scope("cell", use_resource=True):
            w = v1.get_variable("kernel", [4, 4])
            b = v1.get_variable("bias", [4])
        _, h = tf.while_loop(lambda i, h: i < 3,
                             lambda i, h: (i + 1, tf.tanh(tf.nn.bias_add(tf.matmul(h, w), b))),
                             [tf.constant(0), x], name="loop")
        with v1.variable_scope("head", use_resource=True):
            k = v1.get_variable("kernel", [4, 2])

        @tf.function
        def head(t):
            return tf.matmul(t, k)

        tf.identity(head(h), name="y")
    guesses, infos = _roles_of(g)
    assert [n.op for n in GraphIR(g.as_graph_def()).node_list if n.op == "While"] == ["While"]
    assert _role_map(guesses) == {"cell/kernel": "dense.kernel", "cell/bias": "dense.bias",
                                  "head/kernel": "dense.kernel"}
    assert "cell/kernel:0" in infos["cell/kernel"].read_tensors  # the handle enters the loop
    assert guesses["cell/kernel"].consumers[0].startswith("loop_body")


def test_elementwise_parameter_and_ema_and_unused():
    g = tf.Graph()
    with g.as_default(), v1.variable_scope("", use_resource=False):
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        alpha = v1.get_variable("alpha", [4])
        v1.get_variable("unused/kernel", [4, 4])
        y = tf.identity(tf.nn.relu(x) * alpha, name="y")
        loss = tf.reduce_mean(y, name="loss")
        opt = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
        ema = v1.train.ExponentialMovingAverage(0.9)
        with tf.control_dependencies([opt]):
            ema.apply([alpha])
    guesses, infos = _roles_of(g)
    assert guesses["alpha"].role == "custom.param" and "Mul" in guesses["alpha"].reason
    assert infos["alpha/ExponentialMovingAverage"].kind == "ema"
    assert guesses["alpha/ExponentialMovingAverage"].role == "ignore"
    assert guesses["unused/kernel"].role == "ignore"  # read by nothing but machinery


def test_name_hints_for_checkpoint_only_variables():
    guesses, infos = _roles_of(tf.Graph(), {"enc/dense/kernel": [4, 3], "enc/dense/bias": [3],
                                            "bn/moving_mean": [3], "conv/weights": [3, 3, 1, 2]})
    assert not infos["enc/dense/kernel"].in_graph and infos["enc/dense/kernel"].in_checkpoint
    assert _role_map(guesses) == {"enc/dense/kernel": "dense.kernel", "enc/dense/bias": "dense.bias",
                                  "bn/moving_mean": "bn.moving_mean", "conv/weights": "conv.kernel"}
    assert all(g.confidence <= 0.3 and "name hint" in g.reason for g in guesses.values())
    assert name_hint(infos["enc/dense/kernel"])[0] == "dense.kernel"


def test_real_charrnn_roles(real_fixtures):
    run = RunData(real_fixtures, "charrnn_lstm_tf012")
    roles = run.roles()
    base = "rnnlm/MultiRNNCell/Cell%d/BasicLSTMCell/Linear/"
    for cell in (0, 1):
        assert roles[base % cell + "Matrix"].role == "lstm.kernel"
        assert roles[base % cell + "Bias"].role == "lstm.bias"
    assert roles["rnnlm/embedding"].role == "embedding.table"
    assert roles["rnnlm/softmax_w"].role == "dense.kernel"
    assert roles["rnnlm/softmax_b"].role == "dense.bias"
    assert roles["rnnlm/softmax_w/Adam_1"].role == "ignore"
    assert os.path.basename(run.checkpoint_prefix()) == "model.ckpt-46499"


LEGACY_GRAPH = r'''
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf
import tf_slim as slim
v1 = tf.compat.v1
v1.disable_eager_execution()
g = tf.Graph()
with g.as_default():
    x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
    with v1.variable_scope("lstm"):
        h, _ = v1.nn.dynamic_rnn(v1.nn.rnn_cell.LSTMCell(4), x, dtype=tf.float32)
    with v1.variable_scope("gru"):
        h, _ = v1.nn.dynamic_rnn(v1.nn.rnn_cell.GRUCell(4), h, dtype=tf.float32)
    y = v1.layers.dense(slim.layer_norm(h[:, -1], scope="ln"), 6, name="fc")
    y = v1.layers.batch_normalization(y, training=False, name="bn")
    tf.nn.softmax(y, name="probs")
    saver = v1.train.Saver()
    with v1.Session() as s:
        s.run(v1.global_variables_initializer())
        saver.save(s, os.path.join(sys.argv[1], "model.ckpt"), global_step=1)
    v1.summary.FileWriter(sys.argv[1], g).close()
'''


def test_legacy_layers_rnn_cells_in_while_v2(tmp_path):
    """tf.compat.v1 rnn cells / layers / tf_slim, written by a legacy-Keras subprocess."""
    import subprocess
    import sys

    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", LEGACY_GRAPH, str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = RunData(str(tmp_path), ".")
    assert any(n.op in ("While", "StatelessWhile") for n in run.ir.node_list)
    assert {k: g.role for k, g in run.roles().items()} == {
        "lstm/rnn/lstm_cell/kernel": "lstm.kernel", "lstm/rnn/lstm_cell/bias": "lstm.bias",
        "gru/rnn/gru_cell/gates/kernel": "gru.gates_kernel", "gru/rnn/gru_cell/gates/bias": "gru.gates_bias",
        "gru/rnn/gru_cell/candidate/kernel": "gru.candidate_kernel",
        "gru/rnn/gru_cell/candidate/bias": "gru.candidate_bias",
        "ln/gamma": "ln.gamma", "ln/beta": "ln.beta", "fc/kernel": "dense.kernel", "fc/bias": "dense.bias",
        "bn/gamma": "bn.gamma", "bn/beta": "bn.beta", "bn/moving_mean": "bn.moving_mean",
        "bn/moving_variance": "bn.moving_variance"}
    assert run.roles()["lstm/rnn/lstm_cell/kernel"].consumers[0].startswith("lstm_rnn_while_body")
    assert run.default_io() == (["x"], ["probs:0"])
