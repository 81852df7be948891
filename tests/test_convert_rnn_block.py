"""BlockLSTM (tf.contrib.rnn.LSTMBlockFusedCell's op: a whole time-major sequence in one op)
→ keras LSTM in DynamicRNN(time_major), verified against TF, gradients included."""
import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.convert import convert_graph
from tb_varmap.convert.testing import bindings_from_graph
from tb_varmap.errors import BadInput
from tb_varmap.verify import verify

COVERS = ["BlockLSTM"]
v1 = tf.compat.v1


def _graph(seq_len_max="steps", cell_clip=-1.0, use_peephole=False, resource=False):
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
        lengths = v1.placeholder(tf.int32, [None], name="lengths")
        w = v1.get_variable("lstm/kernel", [3 + 4, 16], use_resource=resource)
        b = v1.get_variable("lstm/bias", [16], use_resource=resource,
                            initializer=v1.random_normal_initializer(seed=2))
        zeros, peep = tf.zeros([tf.shape(x)[0], 4]), tf.zeros([4])
        limit = (tf.cast(tf.reduce_max(lengths), tf.int64) if seq_len_max == "lengths"
                 else tf.constant(seq_len_max if seq_len_max != "steps" else 5, tf.int64))
        out = tf.raw_ops.BlockLSTM(seq_len_max=limit, x=tf.transpose(x, [1, 0, 2]),
                                   cs_prev=zeros, h_prev=zeros, w=w, wci=peep, wcf=peep,
                                   wco=peep, b=b, forget_bias=0.7, cell_clip=cell_clip,
                                   use_peephole=use_peephole)
        tf.identity(tf.transpose(out[6], [1, 0, 2]), name="seq")
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            variables = bindings_from_graph(g, sess)
    return g.as_graph_def(), variables


@pytest.mark.parametrize("seq_len_max,cell_clip,resource,inner,standard", [
    ("steps", -1.0, False, "LSTM", True),         # LSTMBlockFusedCell(cell_clip=None)
    ("lengths", -1.0, True, "LSTM", True),        # seq_len_max = max(lengths): shared length
    ("steps", 3.0, False, "RNN", False)])         # the raw op's default clip: TfLSTMCell
def test_block_lstm_converts_and_verifies(seq_len_max, cell_clip, resource, inner, standard):
    gd, variables = _graph(seq_len_max, cell_clip, resource=resource)
    inputs = ["x", "lengths"] if seq_len_max == "lengths" else ["x"]
    conv = convert_graph(gd, inputs, ["seq:0"], variables)
    # the transposes to and from time-major are absorbed: a plain LSTM / RNN remains,
    # wrapped in DynamicRNN only for the shared length
    (lb,) = [lb for lb in conv.layers if lb.tf_nodes[0] == "BlockLSTM"]
    assert lb.tf_nodes == ["BlockLSTM", "transpose_1"] and lb.standard == standard
    layer = conv.model.get_layer(lb.layer)
    if seq_len_max == "lengths":
        assert lb.keras_class == "DynamicRNN" and layer.with_lengths
        assert not layer.time_major
        layer = layer.layer
    assert type(layer).__name__ == inner
    assert not [x for x in conv.layers if x.tf_nodes[0].startswith("transpose")]
    rng = np.random.RandomState(0)
    feed = {"x": (3 * rng.randn(3, 5, 3)).astype("float32")}   # big enough to hit the clip
    if seq_len_max == "lengths":
        feed["lengths"] = np.array([3, 2, 1], "int32")         # steps 3, 4 are zero in TF
    rep = verify(gd, inputs, ["seq:0"], variables, conv, feed=feed)
    assert rep["passed"], (rep["outputs"], rep["gradients"])
    assert {g["variable"] for g in rep["gradients"]} == {"lstm/kernel", "lstm/bias"}


@pytest.mark.parametrize("kwargs,why", [({"use_peephole": True}, "peepholes"),
                                        ({"seq_len_max": 3}, "below the time axis")])
def test_block_lstm_refusals_name_the_reason(kwargs, why):
    gd, variables = _graph(**kwargs)
    with pytest.raises(BadInput) as e:
        convert_graph(gd, ["x"], ["seq:0"], variables)
    assert any("BlockLSTM" in p and why in p for p in e.value.problems), e.value.problems



def test_block_lstm_roles_inferred():
    from tb_varmap.ir import GraphIR
    from tb_varmap.link import link_variables
    from tb_varmap.roles import infer_roles

    gd, _ = _graph()
    ir = GraphIR(gd)
    roles = infer_roles(ir, link_variables(ir, None))
    assert roles["lstm/kernel"].role == "lstm.kernel"
    assert roles["lstm/bias"].role == "lstm.bias"
