"""tb_varmap.control_flow_v1: tf.gradients through a control-flow-v1 loop imported from a
bare GraphDef (no MetaGraph while_context) equals the gradient TF builds natively."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import control_flow_v2_toggles

from tb_varmap.control_flow_v1 import (frames, legacy_gradients, restore_while_contexts,
                                       with_loop_exits)


def _v1_rnn_graph():
    """A v1 while loop with a TensorArray input, a loop invariant weight and two loop
    variables; returns (graph_def, native gradient value, feed)."""
    control_flow_v2_toggles.disable_control_flow_v2()
    try:
        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [None, 4, 3], name="x")
            w = tf.constant(np.random.RandomState(0).randn(3 + 5, 5).astype("float32"),
                            name="w")
            w = tf.identity(w, name="w_read")
            seq = tf.TensorArray(tf.float32, size=4).unstack(tf.transpose(x, [1, 0, 2]))

            def body(t, h, out):
                h = tf.tanh(tf.matmul(tf.concat([seq.read(t), h], 1), w))
                return t + 1, h, out.write(t, h)

            _, h, out = tf.while_loop(lambda t, *_: t < 4, body,
                                      [0, tf.zeros([tf.shape(x)[0], 5]),
                                       tf.TensorArray(tf.float32, size=4)])
            y = tf.identity(tf.reduce_sum(out.stack(), 0) + h, name="y")
            (grad,) = tf.gradients(tf.reduce_sum(y * y), [w])
            feed = {"x:0": np.random.RandomState(1).randn(2, 4, 3).astype("float32")}
            with tf.compat.v1.Session(graph=g) as s:
                native = s.run(grad, feed)
        return g.as_graph_def(), native, feed
    finally:
        control_flow_v2_toggles.enable_control_flow_v2()


def test_rebuilt_while_context_gives_native_gradient():
    gd, native, feed = _v1_rnn_graph()
    needed = with_loop_exits(gd, ["y"])
    assert any("Exit" in n for n in needed)          # every exit of the loop comes along
    sub = tf.compat.v1.graph_util.extract_sub_graph(gd, needed)
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(sub, name="orig")
        assert [op._control_flow_context for op in g.get_operations()
                if op.type == "Enter"][0] is None        # import drops the Python context
        restored = restore_while_contexts(g)
        assert restored == sorted(frames(g))
        y, w = g.get_tensor_by_name("orig/y:0"), g.get_tensor_by_name("orig/w_read:0")
        with legacy_gradients():
            (grad,) = tf.gradients(tf.reduce_sum(y * y), [w])
        with tf.compat.v1.Session(graph=g) as s:
            got = s.run(grad, {"orig/" + k: v for k, v in feed.items()})
    np.testing.assert_allclose(got, native, rtol=1e-6, atol=1e-6)


def test_without_restore_gradient_fails():
    gd, _, _ = _v1_rnn_graph()
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
        y, w = g.get_tensor_by_name("y:0"), g.get_tensor_by_name("w_read:0")
        with pytest.raises(Exception), legacy_gradients():
            tf.gradients(tf.reduce_sum(y), [w])


def test_legacy_gradients_restores_the_switch():
    from tensorflow.python.ops import control_flow_util

    before = control_flow_util.ENABLE_CONTROL_FLOW_V2
    with legacy_gradients():
        assert control_flow_util.ENABLE_CONTROL_FLOW_V2 is False
    with legacy_gradients(active=False):
        assert control_flow_util.ENABLE_CONTROL_FLOW_V2 == before
    assert control_flow_util.ENABLE_CONTROL_FLOW_V2 == before
