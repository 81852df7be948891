"""The real TF1-era artifacts in ../shared/fixtures/real (copied to tmp by the fixture)."""
import os

import numpy as np
import pytest

from tb_varmap.run import RunData, discover_runs
from tb_varmap.sources import RunError


def test_all_fixtures_are_runs(real_fixtures):
    assert discover_runs(real_fixtures) == [
        "bad_half_plus_two", "charrnn_lstm_tf012", "ctc_conv_lstm_tf11", "half_plus_two_savedmodel",
        "half_plus_two_v1_checkpoint"]  # never half_plus_two_savedmodel/variables


def test_charrnn_tf012(real_fixtures):
    run = RunData(real_fixtures, "charrnn_lstm_tf012")
    assert run.graph_source == "meta"
    # the state file names model.ckpt-0, which is gone: the files present win
    assert run.checkpoint_steps == [46499] and "model.ckpt-0" in run.checkpoints.stale_state
    ops = {n.op for n in run.ir.node_list}
    assert {"Concat", "Gather", "Variable"} <= ops  # pre-1.0 op names
    infos = {v.name: v for v in run.variables()}
    matrix = infos["rnnlm/MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix"]
    assert matrix.shape == [256, 512] and matrix.kind == "weight" and matrix.trainable
    assert infos["rnnlm/embedding/Adam"].kind == "optimizer_slot"
    assert infos["beta2_power"].kind == "counter"
    assert infos["Variable"].kind == "weight" and not infos["Variable"].trainable  # the learning rate
    assert run.roles()["Variable"].role == "ignore"
    emb = run.read_variable("rnnlm/embedding")
    assert emb.shape == (67, 128) and emb.dtype == np.float32
    assert run.default_io() == (["Placeholder"], ["Softmax:0"])
    data = run.graph_json()
    assert data["node_count"] == len(run.ir) > 9000
    assert not any(n["forward"] for n in data["nodes"] if n["name"].startswith("gradients/"))


def test_ctc_graph_only_in_meta(real_fixtures):
    run = RunData(real_fixtures, "ctc_conv_lstm_tf11")
    assert run.graph_source == "meta"
    assert run.checkpoint_steps == [0]
    assert os.path.basename(run.checkpoint_prefix()) == "checkpoints"
    roles = {k: g.role for k, g in run.roles().items()}
    assert roles == {
        "Variable": "conv.kernel", "Variable_1": "conv.bias",
        "rnn/multi_rnn_cell/cell_0/lstm_cell/weights": "lstm.kernel",  # inside a v1 while loop
        "rnn/multi_rnn_cell/cell_0/lstm_cell/biases": "lstm.bias",
        "Variable_2": "dense.kernel", "Variable_3": "dense.bias", "Variable_4": "ignore"}
    assert run.variable("Variable_4").kind == "counter"  # int32 global step
    inputs, outputs = run.default_io()
    assert outputs == ["transpose_1:0"]  # the logits fed to CTCLoss
    assert "Placeholder" in inputs  # features; the sparse label placeholders are not inputs
    assert run.read_variable("rnn/multi_rnn_cell/cell_0/lstm_cell/weights").shape == (2168, 480)


def test_half_plus_two_v1_checkpoint(real_fixtures):
    run = RunData(real_fixtures, "half_plus_two_v1_checkpoint")
    assert run.graph_source == "meta"
    assert run.meta_graph_def.meta_info_def.tensorflow_version == "0.12.head"
    assert run.checkpoint_prefix().endswith("export-?????-of-00001")  # V1: no .index
    assert float(run.read_variable("a")) == 0.5 and float(run.read_variable("b")) == 2.0
    assert run.variable("global_step").kind == "counter"
    assert not run.variable("asset_path").in_checkpoint


def test_half_plus_two_savedmodel(real_fixtures):
    run = RunData(real_fixtures, "half_plus_two_savedmodel")
    assert run.graph_source == "saved_model"
    assert run.default_io() == (["x"], ["y:0"])  # from the serving_default signature
    values = {v.name: float(run.read_variable(v.name)) for v in run.variables() if v.in_checkpoint}
    assert values == {"a": 0.5, "b": 2.0, "c": 3.0, "a2": 0.5, "c2": 3.0}


def test_bad_half_plus_two(real_fixtures):
    run = RunData(real_fixtures, "bad_half_plus_two")
    # Its state file names /tmp/bad_half_plus_two/00000123/export (another machine's path): the
    # basename matches the bare V1 file `export` next to export.meta, which is read instead.
    assert run.checkpoints.stale_state == [] and run.checkpoint_steps == [0]
    assert run.checkpoint_prefix() == os.path.join(real_fixtures, "bad_half_plus_two", "export")
    assert run.graph_source == "meta"
    assert float(run.read_variable("Variable")) == 0.5
    assert run.default_io() == (["Placeholder"], ["Add:0"])


def test_broken_files_give_clear_errors(real_fixtures):
    root = os.path.join(real_fixtures, "bad_half_plus_two")
    with open(os.path.join(root, "export"), "r+b") as f:
        f.truncate(40)
    with pytest.raises(RunError, match="export"):
        RunData(real_fixtures, "bad_half_plus_two").variables()
    with open(os.path.join(root, "export.meta"), "wb") as f:
        f.write(b"\x0a\xff\xff\xff broken")
    with pytest.raises(RunError, match="export.meta"):
        RunData(real_fixtures, "bad_half_plus_two").graph_def
    assert "bad_half_plus_two" in discover_runs(real_fixtures)  # listing still works


def test_v1_meta_graph_imports_in_tf2(real_fixtures):
    import tensorflow as tf

    run = RunData(real_fixtures, "half_plus_two_v1_checkpoint")
    meta = tf.compat.v1.MetaGraphDef.FromString(run.meta_graph_bytes())
    assert meta.meta_info_def.tensorflow_version == ""
    with tf.Graph().as_default() as g:
        tf.compat.v1.train.import_meta_graph(meta)
        assert "a/read" in [op.name for op in g.get_operations()]
    assert tf.compat.v1.GraphDef.FromString(run.graph_bytes()).node
