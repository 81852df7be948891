"""Legacy families through roles → convert → verify, on model_dirs TF itself writes
(tb_varmap.demo.families): dynamic_rnn LSTM / GRU / stacked (While v2), peephole refusal,
slim layer_norm."""
import numpy as np
import pytest

from tb_varmap.demo.families import FORGET_BIAS, generate_families, sample_feed
from tb_varmap.errors import BadInput

COVERS = ["dynamic_rnn", "layer_norm", "static_rnn_gru", "static_rnn_lstm",
          "static_rnn_sequence", "dynamic_rnn_v1"]   # for the registry meta-test
MODELS = ["fam_lstm", "fam_gru", "fam_lstm_stacked", "fam_lstm_peephole", "fam_layer_norm",
          "fam_lstm_seqlen", "fam_gru_static", "fam_bilstm", "fam_lstm_static_seq",
          "fam_lstm_proj"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    generate_families(str(out), MODELS, ["ref"])
    generate_families(str(out), ["fam_lstm"], ["resource"])
    return str(out)


def _convert(logdir, run, outputs):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags

    rd = RunData(logdir, run)
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["x"], outputs, bindings)
    return rd, bindings, conv


def _outputs_ok(rd, bindings, conv, run, outputs, atol=1e-5):
    from tb_varmap.verify import verify

    rep = verify(rd.graph_def, ["x"], outputs, bindings, conv,
                 feed=sample_feed(run.replace("_resource", ""), batch=3))
    for o in rep["outputs"]:
        assert o["status"] == "OK" and o["max_abs"] < atol, o
    return rep


def _layer(conv, cls):
    found = [lb for lb in conv.layers if lb.keras_class == cls]
    assert len(found) == 1, [lb.keras_class for lb in conv.layers]
    return conv.model.get_layer(found[0].layer), found[0]


def _lstm_keras(w, b, fb):
    """DESIGN.md: i, j, f, o → i, f, c, o; forget_bias folded into the f bias."""
    u = w.shape[1] // 4
    n_in = w.shape[0] - u

    def r(m):
        return np.concatenate([m[..., :u], m[..., 2 * u:3 * u], m[..., u:2 * u],
                               m[..., 3 * u:]], axis=-1)
    bias = r(b).copy()
    bias[u:2 * u] += np.float32(fb)
    return r(w[:n_in]), r(w[n_in:]), bias


@pytest.mark.parametrize("run", ["fam_lstm", "fam_lstm_resource"])
def test_lstm_dynamic_rnn_becomes_keras_lstm(logdir, run):
    from tb_varmap.run import RunData

    roles = RunData(logdir, run).roles()
    assert roles["rnn/lstm_cell/kernel"].role == "lstm.kernel"
    assert roles["rnn/lstm_cell/bias"].role == "lstm.bias"
    outputs = ["seq:0", "y:0"]
    rd, bindings, conv = _convert(logdir, run, outputs)
    layer, lb = _layer(conv, "LSTM")
    assert lb.standard and "rnn/while" in lb.tf_nodes
    assert not conv.report["unsupported"]["nodes"]
    w = rd.read_variable("rnn/lstm_cell/kernel")
    b = rd.read_variable("rnn/lstm_cell/bias")
    for got, want in zip(layer.weights, _lstm_keras(w, b, FORGET_BIAS)):
        np.testing.assert_array_equal(np.asarray(got.numpy()), want)
    assert all(v.trainable for v in layer.weights)
    rep = _outputs_ok(rd, bindings, conv, run, outputs)
    row = [r for r in rep["layers"] if r["layer"] == lb.layer][0]
    assert row["isolated"]["status"] == "OK", row


def test_gru_dynamic_rnn_becomes_gru_reset_before(logdir):
    from tb_varmap.run import RunData

    roles = {k: g.role for k, g in RunData(logdir, "fam_gru").roles().items()}
    assert [roles[f"rnn/gru_cell/{v}"] for v in ("gates/kernel", "gates/bias",
            "candidate/kernel", "candidate/bias")] == [
        "gru.gates_kernel", "gru.gates_bias", "gru.candidate_kernel", "gru.candidate_bias"]
    outputs = ["seq:0", "y:0"]
    rd, bindings, conv = _convert(logdir, "fam_gru", outputs)
    layer, lb = _layer(conv, "GRU")
    assert layer.get_config()["reset_after"] is False
    g = rd.read_variable("rnn/gru_cell/gates/kernel")
    c = rd.read_variable("rnn/gru_cell/candidate/kernel")
    u, n_in = c.shape[1], c.shape[0] - c.shape[1]
    want = np.concatenate([g[:n_in, u:], g[:n_in, :u], c[:n_in]], axis=1)
    np.testing.assert_array_equal(layer.weights[0].numpy(), want)
    _outputs_ok(rd, bindings, conv, "fam_gru", outputs)


def test_static_rnn_gru_becomes_one_gru(logdir):
    rd, bindings, conv = _convert(logdir, "fam_gru_static", ["y:0"])
    layer, lb = _layer(conv, "GRU")
    assert layer.get_config()["reset_after"] is False
    assert len([n for n in lb.tf_nodes if n.startswith("rnn/gru_cell/MatMul")]) == 10
    assert conv.report["custom_weights"]["params"] == 0
    g = rd.read_variable("rnn/gru_cell/gates/bias")
    c = rd.read_variable("rnn/gru_cell/candidate/bias")
    np.testing.assert_array_equal(layer.weights[2].numpy(),
                                  np.concatenate([g[6:], g[:6], c]))
    _outputs_ok(rd, bindings, conv, "fam_gru_static", ["y:0"])


def test_bidirectional_bw_half_goes_backwards(logdir):
    outputs = ["seq:0", "y:0"]
    rd, bindings, conv = _convert(logdir, "fam_bilstm", outputs)
    fw, _ = _layer(conv, "LSTM")
    bw, lb = _layer(conv, "DynamicRNN")     # TF's reverse of the bw output is absorbed:
    assert lb.tf_nodes[-1] == "ReverseV2" and bw.reverse_sequences   # the layer flips it
    assert type(bw.layer).__name__ == "GRU" and lb.standard
    assert fw.go_backwards is False and bw.layer.go_backwards is True
    assert [lb.keras_class for lb in conv.layers] == [
        "LSTM", "DynamicRNN", "Concatenate", "Concatenate", "Dense"]   # nothing per-op
    _outputs_ok(rd, bindings, conv, "fam_bilstm", outputs)


def test_unrolled_stack_with_every_output_becomes_one_rnn(logdir):
    """static_rnn(MultiRNNCell of 2 BasicLSTMCell), outputs stacked + last h used."""
    outputs = ["seq:0", "y:0"]
    rd, bindings, conv = _convert(logdir, "fam_lstm_static_seq", outputs)
    layer, lb = _layer(conv, "RNN")
    assert [c.units for c in layer.cell.cells] == [8, 6]
    assert [lb.keras_class for lb in conv.layers] == ["RNN", "Dense"]   # nothing per-op
    rep = _outputs_ok(rd, bindings, conv, "fam_lstm_static_seq", outputs)
    assert rep["passed"], rep["gradients"]


@pytest.mark.slow
def test_real_tf012_char_rnn_becomes_stacked_lstm(tmp_path):
    """The real TF 0.12 char-RNN: 2 x BasicLSTMCell(128) unrolled 50 steps (Concat v1,
    Add bias), every step's h concatenated → Sequential([RNN(StackedRNNCells), Reshape])."""
    import shutil

    shutil.copytree("/work/shared/fixtures/real/charrnn_lstm_tf012", tmp_path / "charrnn")
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    rd = RunData(str(tmp_path), "charrnn")
    bindings, _ = variable_bindings(rd, None, empty_tags())
    inputs, outputs = rd.default_io()
    conv = convert_graph(rd.graph_def, inputs, outputs, bindings)
    assert conv.report["custom_weights"]["params"] == 0
    seq = [lb for lb in conv.layers if lb.keras_class == "Sequential"]
    assert len(seq) == 1
    rnn = conv.model.get_layer(seq[0].layer).layers[0]
    assert [c.units for c in rnn.cell.cells] == [128, 128]
    rep = verify(rd.graph_def, inputs, outputs, bindings, conv)
    for o in rep["outputs"]:             # 50 steps x 2 layers: float reassociation only
        assert o["status"] == "OK" and o["max_abs"] < 1e-5, o
    # every gradient row compared and OK under the norm-wise rule; the kernels (repeated
    # values, values closer than rounding) are mapped element by element through the
    # converter's index maps (no longer summed per distinct value). The original itself
    # is 1.1e-5..3.5e-5 off a float64 run of it here (Keras 4.8e-6..2.9e-5).
    grads = {g["variable"]: g for g in rep["gradients"]}
    assert len(grads) == 7
    for row in grads.values():
        assert row["status"] == "OK" and row["max_abs"] <= row["tolerance"], row
    kernel = "rnnlm/MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix"
    assert "note" not in grads[kernel] and conv.index_maps      # exact element mapping
    assert rep["passed"] is True
    # the input and forget gate blocks of layer 0 swapped: caught in that kernel's gradient
    cell = rnn.cell.cells[0]
    k, r, b = (w.numpy() for w in cell.weights)
    swap = np.r_[128:256, 0:128, 256:512]
    cell.kernel.assign(k[:, swap])
    cell.recurrent_kernel.assign(r[:, swap])
    rep = verify(rd.graph_def, inputs, outputs, bindings, conv)
    row = {g["variable"]: g for g in rep["gradients"]}[kernel]
    assert row["status"] == "INACCURATE" and row["max_abs"] > 100 * row["tolerance"], row


def test_stacked_cells_become_one_stacked_rnn(logdir):
    outputs = ["seq:0", "y:0"]
    rd, bindings, conv = _convert(logdir, "fam_lstm_stacked", outputs)
    layer, lb = _layer(conv, "RNN")
    assert [type(c).__name__ for c in layer.cell.cells] == ["LSTMCell", "LSTMCell"]
    assert [c.units for c in layer.cell.cells] == [8, 6]
    _outputs_ok(rd, bindings, conv, "fam_lstm_stacked", outputs)


@pytest.mark.parametrize("run,flags", [
    ("fam_lstm_peephole", {"use_peepholes": True, "cell_clip": 3.0, "num_proj": None}),
    ("fam_lstm_proj", {"use_peepholes": False, "num_proj": 4, "proj_clip": 0.3})])
def test_lstm_cell_extras_become_custom_tf_cell(logdir, run, flags, tmp_path):
    """Peepholes / cell_clip / num_proj: keras RNN over the custom TfLSTMCell, weights in
    TF's layout (trainable), bit-exact outputs, reloadable with safe_mode."""
    import keras

    outputs = ["y:0"]
    rd, bindings, conv = _convert(logdir, run, outputs)
    layer, lb = _layer(conv, "RNN")
    assert not lb.standard and type(layer.cell).__name__ == "TfLSTMCell"
    cfg = layer.cell.get_config()
    assert {k: cfg[k] for k in flags} == pytest.approx(flags)
    assert cfg["forget_bias"] == pytest.approx(FORGET_BIAS if run == "fam_lstm_proj" else 1.0)
    for v in lb.variables:
        w = next(w for w in conv.model.weights if w.path == v["weight"])
        np.testing.assert_array_equal(w.numpy(), rd.read_variable(v["variable"]))
        assert w.trainable
    _outputs_ok(rd, bindings, conv, run, outputs, atol=1e-6)
    path = str(tmp_path / "m.keras")
    conv.model.save(path)
    x = sample_feed(run)["x"]
    np.testing.assert_array_equal(
        np.asarray(keras.saving.load_model(path, safe_mode=True)(x)),
        np.asarray(conv.model(x)))


def test_sequence_length_becomes_masked_standard_lstm(logdir, tmp_path):
    """dynamic_rnn(sequence_length=lengths): the Selects around output and state become a
    Keras mask (DynamicRNN wrapper, zero outputs past the end), the LSTM stays standard;
    rows of different lengths verify OK, gradients included, and the model reloads."""
    import keras

    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    rd = RunData(logdir, "fam_lstm_seqlen")
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["x", "lengths"], ["y:0"], bindings)
    layer, lb = _layer(conv, "DynamicRNN")
    assert lb.standard and type(layer.layer).__name__ == "LSTM"
    assert layer.with_lengths and not layer.layer.return_sequences
    assert lb.tf_inputs[1].startswith("rnn/CheckSeqLen")
    feed = sample_feed("fam_lstm_seqlen", batch=3)
    feed["lengths"] = np.array([5, 2, 1], "int32")
    rep = verify(rd.graph_def, ["x", "lengths"], ["y:0"], bindings, conv, feed=feed)
    assert rep["passed"], (rep["outputs"], rep["gradients"])
    full = dict(feed, lengths=np.array([5, 5, 5], "int32"))
    assert not np.allclose(conv.model([feed["x"], feed["lengths"]]),
                           conv.model([full["x"], full["lengths"]]))    # the mask matters
    path = str(tmp_path / "m.keras")
    conv.model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(again([feed["x"], feed["lengths"]])),
                                  np.asarray(conv.model([feed["x"], feed["lengths"]])))


def test_slim_layer_norm_axes_and_epsilon_from_graph(logdir):
    outputs = ["y:0"]
    rd, bindings, conv = _convert(logdir, "fam_layer_norm", outputs)
    lns = {lb.layer: conv.model.get_layer(lb.layer) for lb in conv.layers
           if lb.keras_class == "LayerNormalization"}
    assert set(lns) == {"ln_last"}                     # BERT style: over the last axis
    cfg_last = lns["ln_last"].get_config()
    assert list(np.ravel(cfg_last["axis"])) in ([2], [-1])
    assert cfg_last["epsilon"] == pytest.approx(1e-12)
    np.testing.assert_array_equal(lns["ln_last"].gamma.numpy(),
                                  rd.read_variable("ln_last/gamma"))
    # slim's default: all non-batch axes, per-channel gamma/beta kept tied ([6])
    (lb,) = [lb for lb in conv.layers if lb.keras_class == "BroadcastLayerNorm"]
    layer = conv.model.get_layer(lb.layer)
    assert layer.axis == [1, 2] and layer.epsilon == pytest.approx(1e-12)
    np.testing.assert_array_equal(layer.gamma.numpy(), rd.read_variable("ln_all/gamma"))
    assert layer.gamma.trainable and layer.beta.trainable
    assert not conv.report["unsupported"]["nodes"]
    rep = _outputs_ok(rd, bindings, conv, "fam_layer_norm", outputs, atol=1e-6)
    grads = {g["variable"]: g for g in rep["gradients"]}
    for v in ("ln_all/gamma", "ln_all/beta", "ln_last/gamma", "ln_last/beta"):
        assert grads[v]["status"] == "OK", grads[v]


def test_real_tf11_v1_loop_becomes_masked_lstm(tmp_path):
    """The real TF 1.1 ctc model: conv → control-flow-v1 dynamic_rnn (ref variables,
    TensorArrayV3, sequence_length) → dense. The loop becomes one standard LSTM in the
    DynamicRNN mask wrapper; everything verifies OK, gradients through the v1 loop too."""
    import shutil

    src = "/work/shared/fixtures/real/ctc_conv_lstm_tf11"
    shutil.copytree(src, tmp_path / "ctc")
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags

    rd = RunData(str(tmp_path), "ctc")
    roles = rd.roles()
    assert roles["rnn/multi_rnn_cell/cell_0/lstm_cell/weights"].role == "lstm.kernel"
    bindings, _ = variable_bindings(rd, None, empty_tags())
    inputs, outputs = rd.default_io()
    conv = convert_graph(rd.graph_def, inputs, outputs, bindings)
    layer, lb = _layer(conv, "DynamicRNN")
    assert type(layer.layer).__name__ == "LSTM" and layer.layer.units == 120
    assert len([n for n in lb.tf_nodes if n.startswith("rnn/while/")]) > 40  # whole frame
    # the per-step output layer (reshape, MatMul + bias, reshape back) is one Dense; what
    # stays custom is weightless: the conv-to-sequence reshape, the time-major transpose
    assert [lb.keras_class for lb in conv.layers] == [
        "Conv2D", "VarMapOp", "DynamicRNN", "Dense", "VarMapOp"]
    assert not conv.report["unsupported"]["nodes"] and \
        conv.report["custom_weights"]["params"] == 0
    w = rd.read_variable("rnn/multi_rnn_cell/cell_0/lstm_cell/weights")
    b = rd.read_variable("rnn/multi_rnn_cell/cell_0/lstm_cell/biases")
    for got, want in zip(layer.layer.weights, _lstm_keras(w, b, 1.0)):
        np.testing.assert_array_equal(np.asarray(got.numpy()), want)
    from tb_varmap.verify import verify

    rng = np.random.RandomState(0)
    feed = {"Placeholder": rng.randn(1, 64, 8, 1).astype("float32"),
            "Placeholder_4": np.array([40], "int32")}
    rep = verify(rd.graph_def, inputs, outputs, bindings, conv, feed=feed)
    assert rep["passed"], (rep["outputs"], rep["gradients"])
    assert {g["variable"] for g in rep["gradients"] if g["status"] == "OK"} >= {
        "rnn/multi_rnn_cell/cell_0/lstm_cell/weights",
        "rnn/multi_rnn_cell/cell_0/lstm_cell/biases"}


def test_static_rnn_unrolled_lstm_becomes_one_lstm(tmp_path):
    """demo_logs/legacy_lstm: static_rnn(BasicLSTMCell) unrolled over 4 steps."""
    import os
    import shutil

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(os.path.join(repo, "demo_logs", "legacy_lstm"), tmp_path / "legacy_lstm")
    rd, bindings, conv = _convert(str(tmp_path), "legacy_lstm", ["y:0"])
    layer, lb = _layer(conv, "LSTM")
    assert len([n for n in lb.tf_nodes if n.startswith("rnn/basic_lstm_cell/MatMul")]) == 4
    assert conv.report["custom_weights"]["params"] == 0
    w = rd.read_variable("rnn/basic_lstm_cell/kernel")
    b = rd.read_variable("rnn/basic_lstm_cell/bias")
    for got, want in zip(layer.weights, _lstm_keras(w, b, 1.0)):
        np.testing.assert_array_equal(np.asarray(got.numpy()), want)
    from tb_varmap.verify import verify

    rep = verify(rd.graph_def, ["x"], ["y:0"], bindings, conv,
                 feed={"x": np.random.RandomState(0).randn(3, 4, 3).astype("float32")})
    assert rep["passed"], (rep["outputs"], rep["gradients"])
