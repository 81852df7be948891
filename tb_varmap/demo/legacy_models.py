"""TF1 models built with legacy layer code (rnn_cell, tf_slim), as most TF1 users wrote them.

Import ONLY in a generator subprocess started with TF_USE_LEGACY_KERAS=1 (generate.py does
that); the plugin, exporter and verifier processes target Keras 3 and must never load this.

Weights are not trained: after initialisation every variable gets seeded random values
(variances positive), so no bias, moving statistic or gate is trivially 0 or 1.
"""
import os
import sys

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError("tb_varmap.demo.legacy_models needs TF_USE_LEGACY_KERAS=1 set before "
                      "TensorFlow is imported; build these models through generate()")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras.src.legacy_tf_layers as _legacy_tf_layers  # noqa: E402

# TF 2.21 looks for tf_keras.legacy_tf_layers (slim.batch_norm goes through it); the
# package only ships it under tf_keras.src.
sys.modules.setdefault("tf_keras.legacy_tf_layers", _legacy_tf_layers)

import tf_slim as slim  # noqa: E402

from tb_varmap.demo.tf1_models import SEED, _dense, _scope, _write_graph_events  # noqa: E402

v1 = tf.compat.v1
FORGET_BIAS = 1.0


def _save_random(model_dir, graph, step=1):
    """Initialise, overwrite every variable with seeded random values, save, log the graph."""
    rng = np.random.RandomState(SEED)
    with graph.as_default():
        variables = v1.global_variables()
        saver = v1.train.Saver(max_to_keep=5)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as sess:
        sess.run(init)
        for var in variables:
            shape = var.shape.as_list()
            value = rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
            if "variance" in var.op.name:
                value = np.abs(value) + 0.5
            var.load(value, sess)
        saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=step)
    _write_graph_events(model_dir, graph).close()


def _rnn(cell_fn, model_dir, variant):
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 4, 3], name="x")
        outputs, _ = v1.nn.static_rnn(cell_fn(), tf.unstack(x, axis=1, name="unstack"),
                                      dtype=tf.float32)
        tf.identity(_dense(outputs[-1], 2, "head", 201), name="y")
    _save_random(model_dir, g)


def build_legacy_lstm(model_dir, variant="ref"):
    """x[None,4,3] -> static_rnn(BasicLSTMCell(8), forget_bias 1.0) -> last h -> dense -> y.

    Kernel rnn/basic_lstm_cell/kernel [3+8, 32] (gates i, j, f, o); forget_bias only in graph.
    """
    _rnn(lambda: v1.nn.rnn_cell.BasicLSTMCell(8, forget_bias=FORGET_BIAS), model_dir, variant)


def build_legacy_gru(model_dir, variant="ref"):
    """x[None,4,3] -> static_rnn(GRUCell(6)) -> last h -> dense -> y.

    rnn/gru_cell/gates/kernel [3+6, 12] (r, u), candidate/kernel [3+6, 6].
    """
    _rnn(lambda: v1.nn.rnn_cell.GRUCell(6), model_dir, variant)


def build_legacy_slim_cnn(model_dir, variant="ref"):
    """x[None,8,8,3] -> slim.conv2d(4, 3x3, batch_norm scale=False, inference) -> relu
    -> slim.layer_norm (all non-batch axes) -> flatten -> slim.fully_connected(5) -> y."""
    g = tf.Graph()
    with g.as_default(), _scope(variant):
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        h = slim.conv2d(x, 4, 3, normalizer_fn=slim.batch_norm,
                        normalizer_params={"is_training": False}, scope="conv")
        h = slim.layer_norm(h, scope="ln")
        h = slim.fully_connected(slim.flatten(h), 5, activation_fn=None, scope="fc")
        tf.identity(h, name="y")
    _save_random(model_dir, g)
