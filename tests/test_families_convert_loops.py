"""dynamic_rnn as TF 1.x wrote it (the "tf1" variant: control-flow-v1 loop over
TensorArrayV3, ref variables) and the dynamic_rnn input conventions (sequence_length,
time_major) in both loop forms: roles → convert → verify OK (outputs and every gradient,
through the v1 loop too), standard Keras layers, reloadable with safe_mode."""
import numpy as np
import pytest

from tb_varmap.demo.families import FAMILIES, generate_families, sample_feed

COVERS = ["time_distributed_dense"]      # for the registry meta-test

# family -> (Keras class of the loop layer, class of the wrapped RNN or None)
EXPECTED = {
    "fam_lstm": ("LSTM", None),
    "fam_basic_lstm": ("LSTM", None),
    "fam_gru": ("GRU", None),
    "fam_lstm_stacked": ("RNN", None),
    "fam_lstm_peephole": ("RNN", None),          # custom TfLSTMCell
    "fam_lstm_proj": ("RNN", None),
    "fam_bilstm": ("LSTM", None),                # + the bw GRU
    "fam_lstm_seqlen": ("DynamicRNN", "LSTM"),
    "fam_gru_seqlen": ("DynamicRNN", "GRU"),
    "fam_lstm_stacked_seqlen": ("DynamicRNN", "RNN"),
    "fam_lstm_time_major": ("DynamicRNN", "LSTM"),
    "fam_lstm_block_cell": ("LSTM", None),       # contrib's LSTMBlockCell op in the loop
    "fam_basic_rnn": ("RNN", None),              # SimpleRNNCells (tanh, relu), stacked
    "fam_gru_block_cell": ("GRU", None),         # contrib's GRUBlockCell op in the loop
}
NEW = ["fam_gru_seqlen", "fam_lstm_stacked_seqlen", "fam_lstm_time_major",
       "fam_lstm_block_cell", "fam_basic_rnn", "fam_gru_block_cell"]
CASES = [(m, "tf1") for m in EXPECTED] + [(m, "ref") for m in NEW]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("families_loops")
    generate_families(str(out), list(EXPECTED), ["tf1"])
    generate_families(str(out), NEW, ["ref"])
    return str(out)


def _run(model, variant):
    return model + ("_tf1" if variant == "tf1" else "")


def _feed(model):
    feed = sample_feed(model, batch=3)
    if "lengths" in feed:
        feed["lengths"] = np.array([5, 2, 1], "int32")   # full, short, one step
    return feed


@pytest.mark.parametrize("model,variant", CASES)
def test_loop_converts_and_verifies(logdir, model, variant):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    rd = RunData(logdir, _run(model, variant))
    ops = {n.op for n in rd.graph_def.node}
    assert ("Enter" in ops and "VariableV2" in ops) if variant == "tf1" else \
        ops & {"While", "StatelessWhile"}
    inputs, outputs = list(FAMILIES[model].inputs), FAMILIES[model].outputs
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, inputs, outputs, bindings)
    cls, inner = EXPECTED[model]
    (lb,) = [lb for lb in conv.layers if lb.keras_class == cls]
    layer = conv.model.get_layer(lb.layer)
    if inner:
        assert type(layer.layer).__name__ == inner and lb.standard
        assert layer.time_major == FAMILIES[model].time_major
        assert layer.with_lengths == ("lengths" in inputs)
    if variant == "tf1":   # the whole v1 frame is one layer, nothing per-op left of it
        assert any("/while/" in n and n.endswith("Enter") for n in lb.tf_nodes)
        assert not [u for u in conv.report["unsupported"]["nodes"] if "/while/" in u["node"]]
    roles = {v["variable"]: v["role"] for v in lb.variables}   # inferred, not tagged
    family = {"lstm", "gru"} if model != "fam_basic_rnn" else {"dense"}  # BasicRNNCell
    assert roles and all(r.split(".")[0] in family or r == "custom.param"
                         for r in roles.values()), roles
    rep = verify(rd.graph_def, inputs, outputs, bindings, conv, feed=_feed(model))
    assert rep["passed"], (rep["outputs"], rep["gradients"])
    assert all(g["status"] == "OK" for g in rep["gradients"]), rep["gradients"]
    assert {g["variable"] for g in rep["gradients"]} >= {
        v["variable"] for v in lb.variables}                 # the loop's weights included
    for o in rep["outputs"]:
        assert o["max_abs"] < 1e-6, o


def test_masked_steps_are_zero_and_state_is_kept(logdir, tmp_path):
    """sequence_length semantics, directly: past a row's length the sequence output is
    zero and the final state equals the state at the length (TF's copy-through)."""
    import keras

    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags

    rd = RunData(logdir, "fam_gru_seqlen_tf1")
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["x", "lengths"], ["seq:0", "y:0"], bindings)
    (lb,) = [lb for lb in conv.layers if lb.keras_class == "DynamicRNN"]
    rnn = conv.model.get_layer(lb.layer)
    feed = _feed("fam_gru_seqlen")
    seq, h = [np.asarray(t) for t in rnn([feed["x"], feed["lengths"]])]
    assert np.all(seq[1, 2:] == 0) and np.all(seq[2, 1:] == 0) and np.any(seq[0, 4] != 0)
    np.testing.assert_array_equal(h[1], seq[1, 1])
    np.testing.assert_array_equal(h[2], seq[2, 0])
    path = str(tmp_path / "m.keras")
    conv.model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    args = [feed["x"], feed["lengths"]]
    for a, b in zip(again(args), conv.model(args)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert again.get_layer(lb.layer).layer.trainable_weights


@pytest.mark.parametrize("batch_from", ["shape", "static"])
def test_per_step_dense_via_reshape_becomes_one_dense(batch_from):
    """TF1 sequence heads: reshape [B, T, C] → [B*T, C], MatMul + bias + relu, reshape back
    to [B, -1, U] (B read with tf.shape, or fixed) → one Keras Dense on the sequence,
    bit-exact, no per-op layers left."""
    import tensorflow as tf

    from tb_varmap.convert import convert_graph
    from tb_varmap.convert.testing import bindings_from_graph, run_model

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None if batch_from == "shape" else 2, 5, 3], "x")
        w = v1.get_variable("head/w", [3, 4], use_resource=False)
        b = v1.get_variable("head/b", [4], initializer=v1.random_normal_initializer(1))
        flat = tf.nn.relu(tf.matmul(tf.reshape(x, [-1, 3]), w) + b)
        lead = tf.shape(x)[0] if batch_from == "shape" else 2
        tf.identity(tf.reshape(flat, [lead, -1, 4]), name="y")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            variables = bindings_from_graph(g, sess)
            feed = np.random.RandomState(0).randn(2, 5, 3).astype("float32")
            want = sess.run("y:0", {"x:0": feed})
    conv = convert_graph(g.as_graph_def(), ["x"], ["y:0"], variables)
    assert [lb.keras_class for lb in conv.layers] == ["Dense"]
    assert not conv.report["unsupported"]["nodes"]
    np.testing.assert_array_equal(run_model(conv.model, [feed])[0], want)


@pytest.fixture(scope="module")
def bidir_logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bidir")
    generate_families(str(out), ["fam_bidir_seqlen_dropout"], ["tf1", "resource"])
    return str(out)


@pytest.mark.parametrize("variant", ["tf1", "resource"])
def test_bidirectional_lengths_dropout_export_and_saved_verify(bidir_logdir, variant):
    """bidirectional_dynamic_rnn with sequence_length (bw over reverse_sequence) and a
    DropoutWrapper whose keep_prob defaults to 1.0 (identity at inference), biases as
    initialized (all 0, GRU gates all 1): both halves stay standard LSTM / GRU layers;
    gradients of the constant-valued biases map back exactly through the converter's
    index maps, also when `tb-varmap verify` reloads the saved model (nested weight
    paths renamed on reload)."""
    import tb_varmap
    from tb_varmap import verify_run
    from tb_varmap.run import RunData

    run = "fam_bidir_seqlen_dropout" + ("_tf1" if variant == "tf1" else "_resource")
    model, report = tb_varmap.export(bidir_logdir, run, inputs=["x", "lengths"],
                                     outputs=["seq:0", "y:0"], verify=True)
    rnns = [lay for lay in report["conversion"]["layers"] if lay["keras_class"] == "DynamicRNN"]
    assert len(rnns) == 2 and all(lay["standard"] for lay in rnns)
    inner = sorted(type(model.get_layer(lay["layer"]).layer).__name__ for lay in rnns)
    assert inner == ["GRU", "LSTM"]
    # both reverse_sequence ops of the bw half are the layer's (masked go_backwards + flip)
    assert [lay["keras_class"] for lay in report["conversion"]["layers"]] == [
        "DynamicRNN", "DynamicRNN", "Concatenate", "Concatenate", "Dense"]
    assert [model.get_layer(lay["layer"]).reverse_sequences for lay in rnns] == [False, True]
    ver = report["verification"]
    assert ver["passed"], (ver["outputs"], ver["gradients"])
    grads = {g["variable"]: g for g in ver["gradients"]}
    for name in ("bidirectional_rnn/fw/lstm_cell/bias", "bidirectional_rnn/bw/gru_cell/gates/bias"):
        assert grads[name]["status"] == "OK" and "note" not in grads[name], grads[name]
    assert max(ver["inputs"]["tensors"][1]["max"], 0) <= 5      # lengths within the 5 steps
    again = verify_run.verify_saved(RunData(bidir_logdir, run))
    assert again["verification"]["passed"], again["verification"]["gradients"]


def test_other_v1_loops_are_refused_with_what_they_hold():
    """A TF1 while loop that is not a dynamic_rnn gets one reason naming the loop and its
    ops (here: h = tanh(h @ w) three times, no TensorArray)."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_v2_toggles

    from tb_varmap.convert import convert_graph
    from tb_varmap.convert.testing import bindings_from_graph
    from tb_varmap.errors import BadInput

    v1 = tf.compat.v1
    control_flow_v2_toggles.disable_control_flow_v2()
    try:
        g = tf.Graph()
        with g.as_default():
            x = v1.placeholder(tf.float32, [None, 4], name="x")
            w = v1.get_variable("w", [4, 4], use_resource=False)
            _, h = tf.while_loop(lambda i, h: i < 3,
                                 lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w))), [0, x])
            tf.identity(h, name="out")
            with v1.Session() as sess:
                sess.run(v1.global_variables_initializer())
                variables = bindings_from_graph(g, sess)
    finally:
        control_flow_v2_toggles.enable_control_flow_v2()
    try:
        conv = convert_graph(g.as_graph_def(), ["x"], ["out:0"], variables)
        problems = [u["reason"] for u in conv.report["unsupported"]["nodes"]]
    except BadInput as e:
        problems = e.problems
    why = [p for p in problems if "TF1 control-flow loop 'while'" in p]
    assert why and "MatMul" in why[0] and "Tanh" in why[0], problems
