"""The "tf1" family variant is what TF 1.x wrote: dynamic_rnn as a control-flow-v1 loop
(Enter/Merge/Switch/NextIteration/Exit over TensorArrayV3) on ref variables (VariableV2 +
/read); the checkpoints restore into their graphs; sample_feed gives valid lengths; and the
new families (GRU / stacked LSTM with sequence_length, time-major LSTM) build. One
generator call for the module (a few small models)."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.demo.families import (DYNAMIC_RNN, FAMILIES, VARIANTS, generate_families,
                                     run_name, sample_feed)
from tb_varmap.errors import BadInput

v1 = tf.compat.v1
MODELS = ["fam_lstm", "fam_gru_seqlen", "fam_lstm_time_major", "fam_embedding"]
V1_LOOP_OPS = {"Enter", "Merge", "Switch", "NextIteration", "Exit", "LoopCond",
               "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3",
               "TensorArrayScatterV3", "TensorArrayGatherV3"}
V2_OPS = {"While", "StatelessWhile", "VarHandleOp", "ReadVariableOp"}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("families_tf1")
    # tf1 first, then ref in the same process: each build sets its own control-flow mode
    written = generate_families(str(out), MODELS, ("tf1", "ref"))
    assert sorted(written) == sorted(run_name(m, v) for m in MODELS for v in ("tf1", "ref"))
    return str(out)


def graph_def(model_dir):
    for path in sorted(glob.glob(os.path.join(model_dir, "events.out.tfevents.*"))):
        for ev in v1.train.summary_iterator(path):
            if ev.graph_def:
                return v1.GraphDef.FromString(ev.graph_def)
    raise AssertionError(f"no graph event in {model_dir}")


def ops_of(gd):
    return {n.op for n in gd.node} | {n.op for f in gd.library.function for n in f.node_def}


def restore_and_run(model_dir, feed, fetches):
    """import_meta_graph + Saver.restore in a fresh graph: (fetched values, {var: value})."""
    prefix = tf.train.latest_checkpoint(model_dir)
    with tf.Graph().as_default() as g, v1.Session(graph=g) as sess:
        saver = v1.train.import_meta_graph(prefix + ".meta")
        saver.restore(sess, prefix)
        values = sess.run(fetches, {k + ":0": v for k, v in feed.items()})
        variables = {v.op.name: sess.run(v) for v in v1.global_variables()}
    return values, variables


def test_variant_names_and_validation(tmp_path):
    assert VARIANTS == ("ref", "resource", "tf1")
    assert run_name("fam_lstm", "tf1") == "fam_lstm_tf1"
    assert run_name("fam_lstm", "resource") == "fam_lstm_resource"
    assert run_name("fam_lstm", "ref") == "fam_lstm"
    with pytest.raises(BadInput):
        generate_families(str(tmp_path), ["fam_lstm"], ("tf2",))


@pytest.mark.parametrize("model", [m for m in MODELS if m in DYNAMIC_RNN])
def test_tf1_dynamic_rnn_is_a_v1_loop_over_ref_variables(logdir, model):
    gd = graph_def(os.path.join(logdir, run_name(model, "tf1")))
    ops = ops_of(gd)
    assert V1_LOOP_OPS <= ops, sorted(V1_LOOP_OPS - ops)
    assert not ops & V2_OPS, sorted(ops & V2_OPS)
    assert not gd.library.function
    nodes = {n.name for n in gd.node}
    variables = [n.name for n in gd.node if n.op == "VariableV2"]
    assert any("/rnn/" in "/" + v for v in variables), variables   # the cell's own kernel
    assert all(v + "/read" in nodes for v in variables)


@pytest.mark.parametrize("model", [m for m in MODELS if m in DYNAMIC_RNN])
def test_ref_variant_keeps_control_flow_v2(logdir, model):
    ops = ops_of(graph_def(os.path.join(logdir, model)))
    assert ops & {"While", "StatelessWhile"} and not ops & {"Enter", "Exit", "TensorArrayV3"}


def test_tf1_non_rnn_family_builds_with_ref_variables(logdir):
    gd = graph_def(os.path.join(logdir, "fam_embedding_tf1"))
    ops = ops_of(gd)
    assert "VariableV2" in ops and not ops & (V2_OPS | V1_LOOP_OPS)


@pytest.mark.parametrize("run", [run_name(m, v) for m in MODELS for v in ("tf1", "ref")])
def test_checkpoint_restores_and_runs(logdir, run):
    model = run[:-len("_tf1")] if run.endswith("_tf1") else run
    fam = FAMILIES[model]
    model_dir = os.path.join(logdir, run)
    feed = sample_feed(model)
    (*outs,), variables = restore_and_run(model_dir, feed, fam.outputs)
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
    stored = reader.get_variable_to_shape_map()
    for name, value in variables.items():
        assert name in stored, name
        np.testing.assert_array_equal(value, reader.get_tensor(name))
    for out in outs:
        assert np.all(np.isfinite(out)) and np.any(out != 0)
    if "seq:0" in fam.outputs:
        seq = outs[fam.outputs.index("seq:0")]
        batch = next(iter(feed.values())).shape[1 if fam.time_major else 0]
        assert seq.shape[:2] == ((fam.steps, batch) if fam.time_major else (batch, fam.steps))
        if "lengths" in feed:     # dynamic_rnn writes zeros past each row's length
            for row, n in enumerate(feed["lengths"]):
                assert not np.any(seq[row, n:]) and np.all(np.any(seq[row, :n], axis=-1))


def test_tf1_and_ref_compute_the_same_function(logdir):
    # same seeded values, same cell: the control-flow version changes the graph only
    for model in ("fam_lstm", "fam_lstm_time_major"):
        feed = sample_feed(model)
        fetch = FAMILIES[model].outputs
        a, _ = restore_and_run(os.path.join(logdir, run_name(model, "tf1")), feed, fetch)
        b, _ = restore_and_run(os.path.join(logdir, model), feed, fetch)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", [m for m, f in FAMILIES.items() if "lengths" in f.inputs])
@pytest.mark.parametrize("batch", [2, 5])
def test_sample_feed_lengths_are_valid(model, batch):
    fam = FAMILIES[model]
    feed = sample_feed(model, batch=batch)
    lengths = feed["lengths"]
    assert lengths.dtype == np.int32 and lengths.shape == (batch,)
    assert fam.steps and fam.steps >= 2
    assert lengths.min() >= 1 and lengths.max() <= fam.steps
    assert fam.steps in lengths and lengths.min() < fam.steps      # a full and a short row
    assert feed["x"].shape == tuple(batch if d is None else d for d in fam.inputs["x"][0])
    np.testing.assert_array_equal(sample_feed(model, batch=batch)["lengths"], lengths)


def test_sample_feed_time_major_puts_batch_second():
    feed = sample_feed("fam_lstm_time_major", batch=4)
    assert feed["x"].shape == (5, 4, 3) and FAMILIES["fam_lstm_time_major"].steps == 5


def test_new_families_are_listed():
    for name in ("fam_gru_seqlen", "fam_lstm_stacked_seqlen", "fam_lstm_time_major"):
        assert name in FAMILIES and name in DYNAMIC_RNN
        assert FAMILIES[name].outputs == ["seq:0", "y:0"]
