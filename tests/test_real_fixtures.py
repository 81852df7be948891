"""The real TF1-era artifacts in ../shared/fixtures/real (copied to tmp by the fixture)."""
import json
import os

import numpy as np
import pytest

from tb_varmap import cli
from tb_varmap.ir import GraphIR
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
    data = run.graph_json()  # what the plugin's /graph and the panel start from
    assert (data["inputs"], data["outputs"]) == (["x"], ["y:0"])
    forward = {n["name"] for n in data["nodes"] if n["forward"]}
    assert {"x", "Mul", "Add", "y"} <= forward and "ParseExample/ParseExample" not in forward
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


# -- default IO of serving exports: the model behind the tf.Example front end ------------------

def test_v1_session_bundle_signatures_give_x_to_y(real_fixtures):
    run = RunData(real_fixtures, "half_plus_two_v1_checkpoint")
    # serving_signatures: a regression default (tf_example → Identity) and the generic
    # inputs/outputs pair (x → y); the one with numeric inputs wins
    assert run.default_io() == (["x"], ["y:0"])
    assert run.graph_json()["inputs"] == ["x"]


def test_tf_example_front_end_is_replaced_by_the_parsed_features(real_fixtures):
    run = RunData(real_fixtures, "half_plus_two_savedmodel")
    gd = run.graph_def
    # no signature at all: the guessed string placeholder gives way to the parsed feature
    assert GraphIR(RunData(real_fixtures, "half_plus_two_v1_checkpoint").graph_def).default_io() == (
        ["x"], ["Identity:0"])
    # only string-input signatures (Estimator-style exports): their tf_example input too
    only_strings = [("classify_x_to_y", "tensorflow/serving/classify", ["tf_example:0"], ["y:0"]),
                    ("regress_x_to_y2", "tensorflow/serving/regress", ["tf_example:0"], ["y2:0"])]
    assert GraphIR(gd, signature=only_strings).default_io() == (["x"], ["y:0"])
    # features the outputs do not use are not inputs; two outputs need both features
    assert GraphIR(gd, signature=(["tf_example:0"], ["y3:0"])).default_io() == (["x2"], ["y3:0"])
    assert GraphIR(gd, signature=(["tf_example:0"], ["y:0", "y3:0"])).default_io() == (
        ["x", "x2"], ["y:0", "y3:0"])


def test_parsed_feature_without_identity_feeds_the_parse_op(tmp_path):
    """No tf.identity names the feature: the decode op's output 0 is the model input."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        serialized = v1.placeholder(tf.string, [None], name="examples")
        feats = v1.io.parse_example(serialized, {"f": v1.io.FixedLenFeature([3], tf.float32)})
        w = v1.get_variable("w", [3, 2])
        tf.matmul(feats["f"], w, name="logits")
    ir = GraphIR(g.as_graph_def())
    (parse,), outputs = ir.default_io()
    assert ir.nodes[parse].op.startswith("ParseExample") and outputs == ["logits:0"]


# -- end to end: `tb-varmap export --verify` with no flags ------------------------------------

def _cli(capsys, *args):
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("run_name, a, b", [("half_plus_two_v1_checkpoint", 0.5, 2.0),
                                            ("half_plus_two_savedmodel", 0.5, 2.0)])
def test_half_plus_two_exports_and_verifies_with_defaults(real_fixtures, capsys, run_name, a, b):
    import keras

    code, out, err = _cli(capsys, "export", "--logdir", real_fixtures, "--run", run_name, "--verify")
    assert code == 0, err
    assert "verification PASSED" in out and "output y:0" in out and " OK" in out
    report = json.load(open(os.path.join(real_fixtures, run_name, "varmap", "report.json")))
    assert report["inputs"] == ["x"] and report["outputs"] == ["y:0"]
    assert report["verification"]["passed"]
    model = keras.saving.load_model(os.path.join(real_fixtures, run_name, "varmap", "model.keras"))
    x = np.array([[0.0], [1.0], [-3.0], [10.0]], np.float32)
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)).reshape(-1),
                               a * x.reshape(-1) + b, rtol=1e-6)
    # the saved model verifies again on its own (the graph is cut at `x` there too)
    code, out, err = _cli(capsys, "verify", "--logdir", real_fixtures, "--run", run_name)
    assert code == 0 and "verification PASSED" in out, err


def test_half_plus_two_savedmodel_other_signature_heads(real_fixtures, capsys):
    """y2 = a*x + c and y3 = a2*x2 + c2 through --outputs alone: the inputs follow them."""
    import keras

    code, out, err = _cli(capsys, "export", "--logdir", real_fixtures, "--run", "half_plus_two_savedmodel",
                          "--outputs", "y2,y3", "--verify", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["inputs"] == ["x", "x2"] and report["verification"]["passed"]
    model = keras.saving.load_model(os.path.join(real_fixtures, "half_plus_two_savedmodel", "varmap",
                                                 "model.keras"))
    x = np.array([[1.0], [4.0]], np.float32)
    run = RunData(real_fixtures, "half_plus_two_savedmodel")
    values = {v.name: float(run.read_variable(v.name)) for v in run.variables() if v.in_checkpoint}
    y2, y3 = model.predict([x, x], verbose=0)
    np.testing.assert_allclose(np.asarray(y2).reshape(-1), values["a"] * x.reshape(-1) + values["c"])
    np.testing.assert_allclose(np.asarray(y3).reshape(-1), values["a2"] * x.reshape(-1) + values["c2"])


def test_bad_half_plus_two_is_a_one_line_error(real_fixtures, capsys):
    code, out, err = _cli(capsys, "export", "--logdir", real_fixtures, "--run", "bad_half_plus_two", "--verify")
    assert code == 2 and out == ""
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "bad_half_plus_two" in line and "export.meta" in line and "'Placeholder'" in line
    assert not os.path.exists(os.path.join(real_fixtures, "bad_half_plus_two", "varmap", "model.keras"))


def test_bad_half_plus_two_console_script(real_fixtures):
    """As users run it: the installed `tb-varmap` ends with one `tb-varmap:` line, exit 2."""
    import subprocess

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(["tb-varmap", "export", "--logdir", real_fixtures, "--run", "bad_half_plus_two",
                             "--verify"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tb-varmap:")]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert "run 'bad_half_plus_two' (graph export.meta)" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("run_name, expected", [
    ("half_plus_two_v1_checkpoint", {"a": "custom.param", "b": "custom.param", "global_step": "ignore",
                                     "asset_path": "ignore", "filename1": "ignore", "filename2": "ignore"}),
    ("half_plus_two_savedmodel", {"a": "custom.param", "b": "custom.param", "c": "custom.param",
                                  "a2": "custom.param", "c2": "custom.param", "filename_tensor": "ignore"}),
    ("bad_half_plus_two", {"Variable": "custom.param", "Variable_1": "custom.param"}),
])
def test_half_plus_two_roles(real_fixtures, capsys, run_name, expected):
    code, out, err = _cli(capsys, "roles", "--logdir", real_fixtures, "--run", run_name, "--json")
    assert code == 0, err
    rows = {row["variable"]: row for row in json.loads(out)}
    assert {k: row["role"] for k, row in rows.items()} == expected
    for name, role in expected.items():
        if role == "custom.param":  # the scalars a, b (c): trainable weights of a custom layer
            assert rows[name]["shape"] == [] and rows[name]["trainable"]
