"""tf.contrib.rnn.LSTMBlockFusedCell: one BlockLSTM op runs the whole time-major sequence
→ keras LSTM in DynamicRNN(time_major) (weights as LSTMCell's: gates i, ci(=j), f, o,
forget_bias folded into the f bias). A `cell_clip` > 0 (the raw op's default is 3) keeps TF's
layout in RNN(TfLSTMCell(cell_clip)); peepholes are refused. `seq_len_max` below the time
axis: steps from it on give zero outputs in every row, i.e. a length shared by all rows."""

import numpy as np

from tb_varmap.convert.handlers.common import skip_identity
from tb_varmap.convert.handlers.rnn import _dynamic, _perm_102, _zero_state, lstm_weights
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register

H_OUTPUT = 6                       # outputs: i, cs, f, o, ci, co, h


@register("BlockLSTM")
def block_lstm(gv, node):
    import keras

    seq_len_max, x, cs_prev, h_prev, w_t, _, _, _, b_t = gv.inputs_of(node)
    if gv.attr(node, "use_peephole", False):
        raise Unsupported(f"BlockLSTM {node.name!r} uses peepholes: not converted")
    used = gv.used_outputs(node.name)
    if used != [H_OUTPUT]:
        raise Unsupported(f"BlockLSTM {node.name!r}: outputs {used} are used; only h "
                          f"(output {H_OUTPUT}) maps to a Keras LSTM's sequence")
    if not gv.is_live(x) or gv.is_live(w_t) or gv.is_live(b_t):
        raise Unsupported(f"BlockLSTM {node.name!r}: expected a live input sequence and "
                          "variable weights")
    kb, bb = gv.var(w_t), gv.var(b_t)
    if kb is None or bb is None:
        raise Unsupported(f"BlockLSTM {node.name!r}: w / b are not checkpoint variables")
    for t in (cs_prev, h_prev):
        _zero_state(gv, t, node)
    fb = float(gv.attr(node, "forget_bias", 1.0))
    clip = float(gv.attr(node, "cell_clip", 3.0))
    lengths = _lengths(gv, node, seq_len_max, x)
    dtype = np.asarray(kb.value).dtype.name
    if clip > 0:
        units = np.asarray(kb.value).shape[1] // 4
        weights = [Weight(0, np.asarray(kb.value), kb, "TF LSTMCell layout (TfLSTMCell)"),
                   Weight(1, np.asarray(bb.value), bb, "TF LSTMCell layout (TfLSTMCell)")]

        def inner(n):
            from tb_varmap.convert.family_layers import TfLSTMCell

            return keras.layers.RNN(TfLSTMCell(units, forget_bias=fb, cell_clip=clip,
                                               dtype=dtype),
                                    return_sequences=True, name=n, dtype=dtype)
        standard = False
    else:
        found = lstm_weights(kb, bb, fb, prefix="BlockLSTM; ")
        if found is None:
            raise Unsupported(f"BlockLSTM {node.name!r}: w {list(kb.value.shape)} / b "
                              f"{list(bb.value.shape)} do not fit [in+u, 4u] / [4u]")
        units, weights = found

        def inner(n):
            return keras.layers.LSTM(units, return_sequences=True, name=n, dtype=dtype)
        standard = True
    x, out, nodes, time_major = _batch_major(gv, node, x)
    emit = Emit(inner, [x], [out], nodes, name=node.name, weights=weights,
                standard=standard)
    return _dynamic(emit, lengths, time_major=time_major)


def _batch_major(gv, node, x):
    """transpose(x, [1, 0, 2]) in and transpose(h, [1, 0, 2]) out (the usual wrapping of a
    fused cell) are absorbed: (layer input, output tensor, nodes, time-major?)."""
    h = f"{node.name}:{H_OUTPUT}"
    _, tin = skip_identity(gv, x)
    cons = [gv.nodes[c] for c, _ in gv.consumers.get(h, [])]
    if tin.op == "Transpose" and _perm_102(gv, tin) and len(cons) == 1 and \
            cons[0].op == "Transpose" and _perm_102(gv, cons[0]) and h not in gv.outputs:
        return gv.inputs_of(tin)[0], cons[0].name + ":0", [node.name, cons[0].name], False
    return x, h, [node.name], True


def _lengths(gv, node, seq_len_max, x):
    """None when seq_len_max covers the whole time axis, else the (scalar) tensor."""
    if gv.is_live(seq_len_max):
        return seq_len_max
    steps = (gv.shape(x) or [None])[0]
    limit = int(np.asarray(gv.static(seq_len_max)).reshape(()))
    if steps is not None and limit >= steps:
        return None
    raise Unsupported(f"BlockLSTM {node.name!r}: seq_len_max {limit} is a constant below "
                      f"the time axis {steps}; not converted")
