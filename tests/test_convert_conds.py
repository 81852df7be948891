"""Conditionals with a fixed predicate (is_training = placeholder_with_default(False)):
the taken branch is converted, in both cond forms (v1 Switch/Merge, v2 If inlined);
verification still runs TF's own cond."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import control_flow_v2_toggles

from tb_varmap.convert import convert_graph
from tb_varmap.convert.conds import fold_static_conds, static_bool
from tb_varmap.convert.testing import bindings_from_graph
from tb_varmap.verify import verify

v1 = tf.compat.v1


def _graph(v2, default=False):
    if not v2:
        control_flow_v2_toggles.disable_control_flow_v2()
    try:
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [None, 4], name="x")
            train = v1.placeholder_with_default(default, [], name="is_training")
            w = v1.get_variable("fc/kernel", [4, 3], use_resource=v2)
            h = tf.matmul(x, w)
            h = tf.cond(train, lambda: tf.nn.dropout(h, rate=0.5), lambda: tf.nn.relu6(h))
            tf.identity(h, name="y")
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                variables = bindings_from_graph(g, sess)
        return g.as_graph_def(), variables
    finally:
        control_flow_v2_toggles.enable_control_flow_v2()


@pytest.mark.parametrize("v2", [False, True], ids=["switch_merge", "if"])
def test_fixed_predicate_converts_the_taken_branch(v2):
    gd, variables = _graph(v2)
    ops = {n.op for n in gd.node}
    assert ("If" in ops or "StatelessIf" in ops) if v2 else {"Switch", "Merge"} <= ops
    conv = convert_graph(gd, ["x"], ["y:0"], variables)
    assert conv.report["custom_weights"]["params"] == 0
    assert [lb.keras_class for lb in conv.layers] == ["Dense"]      # relu6 fused
    assert not conv.report["unsupported"]["nodes"]                 # no Switch / If left
    assert any("predicate" in w for w in conv.report["warnings"])
    x = np.random.RandomState(0).randn(3, 4).astype("float32")
    rep = verify(gd, ["x"], ["y:0"], variables, conv, feed={"x": x})
    assert rep["passed"], (rep["outputs"], rep["gradients"])
    want = np.clip(x @ variables[0].value, 0, 6)                   # the else branch
    np.testing.assert_allclose(np.asarray(conv.model(x)), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("v2", [False, True], ids=["switch_merge", "if"])
def test_a_fed_predicate_is_not_folded(v2):
    gd, _ = _graph(v2)
    same, notes = fold_static_conds(gd, ["x", "is_training"])
    assert same is gd and notes == []


def test_verification_checks_the_resolved_graph_against_the_original():
    """verify compares the layers on the resolved graph and reports the original graph's
    outputs (TF's own cond) against it: equal, atol = rtol = 0."""
    gd, variables = _graph(v2=True)
    conv = convert_graph(gd, ["x"], ["y:0"], variables)
    rep = verify(gd, ["x"], ["y:0"], variables, conv)
    (row,) = rep["conditionals"]["outputs"]
    assert row["status"] == "OK" and row["max_abs"] == 0.0
    assert rep["conditionals"]["resolved"] and rep["passed"]


def test_static_bool_follows_defaults_and_not():
    g = tf.Graph()
    with g.as_default():
        flag = v1.placeholder_with_default(True, [], name="flag")
        tf.identity(tf.logical_not(flag), name="off")
    nodes = {n.name: n for n in g.as_graph_def().node}
    assert static_bool(nodes, "off:0", set()) is False
    assert static_bool(nodes, "flag:0", {"flag"}) is None


def test_slim_is_training_placeholder_tf1(tmp_path):
    """slim batch_norm + dropout on is_training = placeholder_with_default(False), as TF 1.x
    wrote it (Switch/Merge): standard Conv2D / BatchNormalization / Dense, verified OK."""
    from tb_varmap.demo.families import generate_families
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags

    generate_families(str(tmp_path), ["fam_slim_is_training"], ["tf1"])
    rd = RunData(str(tmp_path), "fam_slim_is_training_tf1")
    assert {"Switch", "Merge"} <= {n.op for n in rd.graph_def.node}
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["x"], ["y:0"], bindings)
    assert [lb.keras_class for lb in conv.layers] == [
        "Conv2D", "BatchNormalization", "Activation", "Reshape", "Dense"]
    assert conv.report["custom_weights"]["params"] == 0
    rep = verify(rd.graph_def, ["x"], ["y:0"], bindings, conv)
    assert rep["passed"], (rep["outputs"], rep["gradients"])
