"""Small real TF1-style models, built with tf.compat.v1 graph mode, written as model_dirs.

Each builder `build_<name>(model_dir, variant)` builds one model in a fresh tf.Graph and writes
what TF1 users had on disk: the graph in an event file (FileWriter) or graph.pbtxt, a Saver
checkpoint `model.ckpt-<step>.{index,data,meta}` and the `checkpoint` state file.

variant "ref" makes VariableV2 + `<var>/read` variables; "resource" makes VarHandleOp +
ReadVariableOp ones (chosen with `use_resource=` on the variable scope, no global toggle).
Everything is seeded, so two runs write identical values.

Run this module only in a generator subprocess (see generate.py); it never imports tf_keras.
"""
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
VARIANTS = ("ref", "resource")
SEED = 1234


@dataclass
class ModelSpec:
    """What a demo model is: its builder, feeds and fetches (for tests and the exporter)."""

    name: str
    build: object                       # build(model_dir, variant) -> None
    inputs: dict                        # placeholder node -> (shape with None batch, dtype)
    outputs: list                       # output tensors, e.g. ["probs:0"]
    step: int                           # latest checkpoint step written
    description: str
    steps: list = field(default_factory=list)   # every checkpoint step kept
    graph_source: str = "events"        # "events" | "graph.pbtxt"
    zoo: bool = False                   # one-op models for exporter tests
    legacy: bool = False                # rnn_cell / tf_slim: built with TF_USE_LEGACY_KERAS=1


# ---------------------------------------------------------------- helpers

def _scope(variant):
    """Variable scope at the root that picks ref or resource variables for all below."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return v1.variable_scope(v1.get_variable_scope(), use_resource=variant == "resource")


def _init(seed, stddev=0.1):
    return v1.truncated_normal_initializer(stddev=stddev, seed=seed)


def _save(sess, saver, model_dir, step):
    saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=step)


def _writer(logdir, graph, with_graph=True):
    """A FileWriter (needs a graph context: it refuses to run eagerly)."""
    with graph.as_default():
        writer = v1.summary.FileWriter(logdir, graph if with_graph else None)
    writer.flush()
    return writer


def _write_graph_events(model_dir, graph):
    return _writer(model_dir, graph)


def _dense(h, units, name, variant_init_seed, use_bias=True, kernel_name="kernel",
           bias_name="bias"):
    """TF1-layers-style dense: <name>/kernel, <name>/bias, ops <name>/MatMul, <name>/BiasAdd."""
    with v1.variable_scope(name):
        w = v1.get_variable(kernel_name, [int(h.shape[-1]), units],
                            initializer=_init(variant_init_seed))
        out = tf.matmul(h, w, name="MatMul")
        if use_bias:
            b = v1.get_variable(bias_name, [units],
                                initializer=v1.random_uniform_initializer(
                                    -0.1, 0.1, seed=variant_init_seed + 1))
            out = tf.nn.bias_add(out, b, name="BiasAdd")
    return out


def _conv(h, ksize, out_ch, name, seed, use_bias=True, padding="SAME"):
    with v1.variable_scope(name):
        w = v1.get_variable("kernel", [ksize, ksize, int(h.shape[-1]), out_ch],
                            initializer=_init(seed))
        out = tf.nn.conv2d(h, w, strides=[1, 1, 1, 1], padding=padding, name="Conv2D")
        if use_bias:
            b = v1.get_variable("bias", [out_ch],
                                initializer=v1.random_uniform_initializer(-0.1, 0.1, seed=seed + 1))
            out = tf.nn.bias_add(out, b, name="BiasAdd")
    return out


def _init_only(model_dir, graph, step, outputs_for_writer=True):
    """Initialise every variable, write graph events + one checkpoint at `step`."""
    with graph.as_default():
        saver = v1.train.Saver(max_to_keep=5)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as sess:
        sess.run(init)
        _save(sess, saver, model_dir, step)
    if outputs_for_writer:
        _write_graph_events(model_dir, graph).close()


# ---------------------------------------------------------------- seed cases

def build_dense_nobias(model_dir, variant="ref"):
    """x[None,10] -> MatMul(dense/kernel [10,5]) -> y. No bias."""
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 10], name="x")
        y = _dense(x, 5, "dense", 11, use_bias=False)
        tf.identity(y, name="y")
    _init_only(model_dir, g, step=1)


def build_conv_bias(model_dir, variant="ref"):
    """x[None,28,28,3] -> Conv2D 3x3x3x32 + BiasAdd + Relu -> y."""
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 28, 28, 3], name="x")
        h = _conv(x, 3, 32, "conv", 21)
        h = tf.nn.relu(h, name="conv/Relu")
        tf.identity(h, name="y")
    _init_only(model_dir, g, step=1)


def build_custom_sigmoid(model_dir, variant="ref"):
    """x[None,4] -> sigmoid(x * param), param a trainable scalar (0.75) -> y."""
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        param = v1.get_variable("param", [], initializer=v1.constant_initializer(0.75))
        tf.identity(tf.sigmoid(x * param), name="y")
    _init_only(model_dir, g, step=1)


# ---------------------------------------------------------------- CNN + BN + Adam

BN_EPS = 1e-3
BN_MOMENTUM = 0.9


def _bn_vars(channels):
    gamma = v1.get_variable("gamma", [channels], initializer=v1.ones_initializer())
    beta = v1.get_variable("beta", [channels], initializer=v1.zeros_initializer())
    mean = v1.get_variable("moving_mean", [channels], initializer=v1.zeros_initializer(),
                           trainable=False)
    var = v1.get_variable("moving_variance", [channels], initializer=v1.ones_initializer(),
                          trainable=False)
    return gamma, beta, mean, var


def _update_moving(moving, batch_value):
    """moving -= (moving - batch) * (1 - momentum), registered in UPDATE_OPS."""
    upd = v1.assign_sub(moving, (moving - batch_value) * (1.0 - BN_MOMENTUM))
    v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, upd)


def _bn_fused(h, name, training):
    """FusedBatchNormV3: batch stats + moving-average updates in training, moving stats else."""
    with v1.variable_scope(name):
        gamma, beta, mean, var = _bn_vars(int(h.shape[-1]))
        if training:
            y, bmean, bvar = v1.nn.fused_batch_norm(h, gamma, beta, epsilon=BN_EPS,
                                                    is_training=True, name="FusedBatchNormV3")
            _update_moving(mean, bmean)
            _update_moving(var, bvar)
        else:
            y, _, _ = v1.nn.fused_batch_norm(h, gamma, beta, mean=mean, variance=var,
                                             epsilon=BN_EPS, is_training=False,
                                             name="FusedBatchNormV3")
    return y


def _bn_unfused(h, name, training):
    """Unfused form (moments / Rsqrt / Mul / Sub), as tf.nn.batch_normalization writes it."""
    with v1.variable_scope(name):
        gamma, beta, mean, var = _bn_vars(int(h.shape[-1]))
        if training:
            bmean, bvar = tf.nn.moments(h, axes=[0, 1, 2], name="moments")
            _update_moving(mean, bmean)
            _update_moving(var, bvar)
            m, v = bmean, bvar
        else:
            m, v = mean, var
        y = tf.nn.batch_normalization(h, m, v, beta, gamma, BN_EPS, name="batchnorm")
    return y


def _cnn(x, training):
    h = _conv(x, 3, 8, "conv1", 31)
    h = _bn_fused(h, "bn1", training)
    h = tf.nn.relu(h, name="relu1")
    h = tf.nn.max_pool2d(h, 2, 2, "VALID", name="pool1")
    h = _conv(h, 3, 16, "conv2", 41)
    h = _bn_unfused(h, "bn2", training)
    h = tf.nn.relu(h, name="relu2")
    h = tf.nn.avg_pool2d(h, 2, 2, "VALID", name="pool2")
    h = tf.reduce_mean(h, axis=[1, 2], name="global_mean")
    return _dense(h, 10, "logits", 51)


def build_cnn_bn_adam(model_dir, variant="ref"):
    """conv1+bias -> fused BN -> relu -> maxpool -> conv2+bias -> unfused BN -> relu -> avgpool
    -> mean -> dense -> softmax probs; Adam, trained 5 steps; checkpoints at steps 2 and 5.

    The inference tower (ops under `model/`, moving statistics) feeds `probs`; the training
    tower (`model_1/`, batch statistics, updates moving_mean/variance) feeds `loss`.
    """
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 16, 16, 3], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        with v1.variable_scope("model", reuse=v1.AUTO_REUSE):
            logits = _cnn(x, training=False)
        tf.nn.softmax(logits, name="probs")
        with v1.variable_scope("model", reuse=v1.AUTO_REUSE):
            train_logits = _cnn(x, training=True)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=train_logits),
            name="total_loss")
        v1.summary.scalar("loss", loss)
        global_step = v1.train.get_or_create_global_step()
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
            train_op = v1.train.AdamOptimizer(0.01).minimize(loss, global_step=global_step)
        summaries = v1.summary.merge_all()
        saver = v1.train.Saver(max_to_keep=5)
        init = v1.global_variables_initializer()
    rng = np.random.RandomState(SEED)
    writer = _write_graph_events(model_dir, g)
    with v1.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(5):
            feed = {x: rng.randn(8, 16, 16, 3).astype(np.float32),
                    labels: rng.randint(0, 10, size=8)}
            _, s = sess.run([train_op, summaries], feed)
            step = int(sess.run(global_step))   # read after the update (resource vars race)
            writer.add_summary(s, step)
            if step in (2, 5):
                _save(sess, saver, model_dir, step)
    writer.close()


# ---------------------------------------------------------------- estimator-style MLP

def build_mlp_estimator_style(model_dir, variant="ref"):
    """2-layer MLP named like a canned DNNClassifier; graph in graph.pbtxt (no graph event).

    model_dir holds graph.pbtxt, model.ckpt-10.*, a scalar-only training event file, and
    eval/ with only a scalar event file (an eval dir, not a source run).
    """
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 6], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        h = _dense(x, 16, "dnn/hiddenlayer_0", 61)
        h = tf.nn.relu(h, name="dnn/hiddenlayer_0/Relu")
        logits = _dense(h, 3, "dnn/logits", 71)
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
            name="total_loss")
        v1.summary.scalar("loss", loss)
        global_step = v1.train.get_or_create_global_step()
        train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=global_step)
        summaries = v1.summary.merge_all()
        saver = v1.train.Saver(max_to_keep=5)
        init = v1.global_variables_initializer()
    tf.io.write_graph(g.as_graph_def(), model_dir, "graph.pbtxt", as_text=True)
    rng = np.random.RandomState(SEED)
    writer = _writer(model_dir, g, with_graph=False)       # scalars only, no graph
    eval_writer = _writer(os.path.join(model_dir, "eval"), g, with_graph=False)
    with v1.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(10):
            feed = {x: rng.randn(16, 6).astype(np.float32), labels: rng.randint(0, 3, size=16)}
            _, s = sess.run([train_op, summaries], feed)
            step = int(sess.run(global_step))   # read after the update (resource vars race)
            writer.add_summary(s, step)
        _save(sess, saver, model_dir, step)
        feed = {x: rng.randn(16, 6).astype(np.float32), labels: rng.randint(0, 3, size=16)}
        eval_loss = sess.run(loss, feed)
    eval_writer.add_summary(
        v1.Summary(value=[v1.Summary.Value(tag="loss", simple_value=float(eval_loss))]), step)
    writer.close()
    eval_writer.close()


# ---------------------------------------------------------------- partitioned embedding

def build_partitioned_embedding(model_dir, variant="ref"):
    """ids[None,5] -> embedding [10,4] in 3 partitions ("mod" lookup) -> mean -> dense -> y.

    Partitions embedding/part_0..2 have 4, 3, 3 rows; with the "mod" strategy id i lives in
    partition i % 3 at row i // 3. Trained 3 SGD steps; checkpoint at step 3.
    """
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        ids = v1.placeholder(tf.int64, [None, 5], name="ids")
        target = v1.placeholder(tf.float32, [None, 3], name="target")
        table = v1.get_variable("embedding", [10, 4], initializer=_init(81, 1.0),
                                partitioner=v1.fixed_size_partitioner(3))
        emb = v1.nn.embedding_lookup(table, ids, partition_strategy="mod", name="lookup")
        emb = tf.identity(emb, name="embedded")
        h = tf.reduce_mean(emb, axis=1, name="mean")
        y = _dense(h, 3, "fc", 91, kernel_name="weights", bias_name="biases")
        y = tf.identity(y, name="y")
        loss = tf.reduce_mean(tf.square(y - target), name="total_loss")
        global_step = v1.train.get_or_create_global_step()
        train_op = v1.train.GradientDescentOptimizer(0.5).minimize(loss, global_step=global_step)
        saver = v1.train.Saver(max_to_keep=5)
        init = v1.global_variables_initializer()
    rng = np.random.RandomState(SEED)
    with v1.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(3):
            sess.run(train_op, {ids: rng.randint(0, 10, size=(8, 5)),
                                target: rng.randn(8, 3).astype(np.float32)})
            step = int(sess.run(global_step))
        _save(sess, saver, model_dir, step)
    _write_graph_events(model_dir, g).close()


# ---------------------------------------------------------------- ops zoo

def _zoo_builder(fn, in_shape):
    """A one-op model: x[None, *in_shape] -> fn(x) -> y, variables initialised, step 1.

    Every zoo model has a global_step, so op-only models still have a checkpoint.
    """
    def build(model_dir, variant="ref"):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, *in_shape], name="x")
            tf.identity(fn(x), name="y")
            v1.train.get_or_create_global_step()
        _init_only(model_dir, g, step=1)
    build.__doc__ = fn.__doc__
    return build


def _w(name, shape, seed):
    return v1.get_variable(name, shape, initializer=_init(seed, 0.3))


def _zoo_conv_transpose(x):
    """conv2d_transpose, kernel [3,3,out=6,in=4], stride 2, SAME."""
    with v1.variable_scope("deconv"):
        w = _w("kernel", [3, 3, 6, 4], 101)
        b = _w("bias", [6], 102)
        n = tf.shape(x)[0]
        y = tf.nn.conv2d_transpose(x, w, tf.stack([n, 16, 16, 6]), [1, 2, 2, 1], "SAME",
                                   name="conv2d_transpose")
        return tf.nn.bias_add(y, b)


def _zoo_depthwise(x):
    """depthwise_conv2d, kernel [3,3,4,2], SAME."""
    with v1.variable_scope("depthwise"):
        return tf.nn.depthwise_conv2d(x, _w("depthwise_kernel", [3, 3, 4, 2], 111),
                                      [1, 1, 1, 1], "SAME")


def _zoo_separable(x):
    """separable_conv2d, depthwise [3,3,4,1], pointwise [1,1,4,5], + bias."""
    with v1.variable_scope("separable"):
        y = tf.nn.separable_conv2d(x, _w("depthwise_kernel", [3, 3, 4, 1], 121),
                                   _w("pointwise_kernel", [1, 1, 4, 5], 122),
                                   [1, 1, 1, 1], "SAME")
        return tf.nn.bias_add(y, _w("bias", [5], 123))


def _zoo_pad_concat(x):
    """pad (1 on H/W) then concat with itself on channels."""
    p = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    return tf.concat([p, p * 2.0], axis=-1)


def _zoo_reshape_transpose(x):
    """reshape [-1, 64, 4] then transpose [0, 2, 1]."""
    return tf.transpose(tf.reshape(x, [-1, 64, 4]), [0, 2, 1])


def _zoo_activations(x):
    """relu6, elu, selu, softplus, leaky_relu(0.2) summed."""
    return (tf.nn.relu6(x) + tf.nn.elu(x) + tf.nn.selu(x) + tf.nn.softplus(x)
            + tf.nn.leaky_relu(x, alpha=0.2))


def _zoo_reductions(x):
    """mean over H/W, sum over H/W, max over channels, concatenated per batch row."""
    m = tf.reduce_mean(x, axis=[1, 2])
    s = tf.reduce_sum(x, axis=[1, 2])
    mx = tf.reshape(tf.reduce_max(x, axis=-1), [-1, 64])
    return tf.concat([m, s, mx], axis=1)


_ZOO = {
    "zoo_conv_transpose": (_zoo_conv_transpose, [8, 8, 4]),
    "zoo_depthwise": (_zoo_depthwise, [8, 8, 4]),
    "zoo_separable": (_zoo_separable, [8, 8, 4]),
    "zoo_pad_concat": (_zoo_pad_concat, [8, 8, 4]),
    "zoo_reshape_transpose": (_zoo_reshape_transpose, [8, 8, 4]),
    "zoo_activations": (_zoo_activations, [8, 8, 4]),
    "zoo_reductions": (_zoo_reductions, [8, 8, 4]),
}


# ---------------------------------------------------------------- legacy layers

def _legacy_builder(name, doc):
    """Builder that loads legacy_models lazily (only a TF_USE_LEGACY_KERAS=1 process can)."""
    def build(model_dir, variant="ref"):
        from tb_varmap.demo import legacy_models

        return getattr(legacy_models, "build_" + name)(model_dir, variant)
    build.__doc__ = doc
    return build


_LEGACY = {
    "legacy_lstm": "x[None,4,3] -> static_rnn(BasicLSTMCell(8), forget_bias 1.0) -> last h "
                   "-> dense -> y. rnn/basic_lstm_cell/kernel [11, 32], gates i, j, f, o.",
    "legacy_gru": "x[None,4,3] -> static_rnn(GRUCell(6)) -> last h -> dense -> y. "
                  "rnn/gru_cell/gates/kernel [9, 12] (r, u), candidate/kernel [9, 6].",
    "legacy_slim_cnn": "x[None,8,8,3] -> slim.conv2d + slim.batch_norm (scale=False, "
                       "inference) + relu -> slim.layer_norm -> flatten -> "
                       "slim.fully_connected(5) -> y.",
}


# ---------------------------------------------------------------- registry

def _spec(name, build, inputs, outputs, step, steps=None, **kw):
    return ModelSpec(name=name, build=build, inputs=inputs, outputs=outputs, step=step,
                     steps=steps or [step], description=(build.__doc__ or "").strip(), **kw)


MODELS = {s.name: s for s in [
    _spec("dense_nobias", build_dense_nobias, {"x": ([None, 10], "float32")}, ["y:0"], 1),
    _spec("conv_bias", build_conv_bias, {"x": ([None, 28, 28, 3], "float32")}, ["y:0"], 1),
    _spec("custom_sigmoid", build_custom_sigmoid, {"x": ([None, 4], "float32")}, ["y:0"], 1),
    _spec("cnn_bn_adam", build_cnn_bn_adam, {"x": ([None, 16, 16, 3], "float32")},
          ["probs:0"], 5, steps=[2, 5]),
    _spec("mlp_estimator_style", build_mlp_estimator_style, {"x": ([None, 6], "float32")},
          ["probs:0"], 10, graph_source="graph.pbtxt"),
    _spec("partitioned_embedding", build_partitioned_embedding,
          {"ids": ([None, 5], "int64")}, ["y:0"], 3),
] + [
    _spec(name, _zoo_builder(fn, shape), {"x": ([None, *shape], "float32")}, ["y:0"], 1,
          zoo=True)
    for name, (fn, shape) in _ZOO.items()
] + [
    _spec(name, _legacy_builder(name, doc),
          {"x": ([None, 4, 3] if "slim" not in name else [None, 8, 8, 3], "float32")},
          ["y:0"], 1, legacy=True)
    for name, doc in _LEGACY.items()
]}


def sample_feed(name, batch=2, seed=0):
    """Deterministic numpy inputs for a model's placeholders, keyed by placeholder name."""
    rng = np.random.RandomState(seed)
    feed = {}
    for node, (shape, dtype) in MODELS[name].inputs.items():
        full = [batch if d is None else d for d in shape]
        if dtype.startswith("int"):
            feed[node] = rng.randint(0, 10, size=full).astype(dtype)
        else:
            feed[node] = rng.randn(*full).astype(dtype)
    return feed
