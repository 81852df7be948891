"""dynamic_rnn over an LSTMCell with peepholes, cell_clip and/or num_proj (+ proj_clip):
no standard Keras cell computes it, so → keras.layers.RNN(TfLSTMCell) (family_layers),
weights in TF's own layout (kernel i, j, f, o; bias; w_*_diag; projection), trainable.

Called by rnn.dynamic_rnn when the loop body is not a plain cell. The body must hold
exactly the ops such a cell writes for the flags found (checked by counts); verification
then compares it numerically.
"""

from collections import Counter

import numpy as np

from tb_varmap.convert.handlers.rnn import (READ_OPS, _concat, _output_list, _ret_index,
                                            _sequence_output, _split_users, _zero_state)
from tb_varmap.convert.registry import Emit, Unsupported, Weight

DIAGS = ("w_f_diag", "w_i_diag", "w_o_diag")


def _const(body, ref):
    import tensorflow as tf

    n = body.node(body.through(ref))
    if n is None or n.op != "Const":
        return None
    v = tf.make_ndarray(n.attr["value"].tensor)
    return float(v.reshape(())) if v.size == 1 else None


def _clip_of(body, ref):
    """ref = Maximum(Minimum(t, c), -c) → (t, c), else None."""
    mx = body.node(ref)
    if mx is None or mx.op != "Maximum":
        return None
    a, lo = body.inputs(mx)
    mn = body.node(a)
    if mn is None or mn.op != "Minimum":
        return None
    t, hi = body.inputs(mn)
    hi, lo = _const(body, hi), _const(body, lo)
    if hi is None or lo is None or lo != -hi:
        return None
    return t, hi


def tf_lstm_cell(gv, loop, x, in_arg, back, time_major):
    import keras

    node, body, ins = loop, loop.body, loop.ins
    loop_vars = {}                    # role/name kind -> (loop arg index, binding)
    for k, t in enumerate(ins):
        b = gv.var(t)
        if b is None:
            continue
        leaf = b.name.rsplit("/", 1)[-1]
        kind = leaf if leaf in DIAGS else ("projection" if b.name.endswith(
            "projection/kernel") else b.role)
        if kind in loop_vars or kind not in DIAGS + ("projection", "lstm.kernel",
                                                     "lstm.bias"):
            return None
        loop_vars[kind] = (k, b)
    if "lstm.kernel" not in loop_vars or "lstm.bias" not in loop_vars:
        return None
    mms = [n for n in body.nodes.values() if n.op == "MatMul"
           and body.arg_index(body.inputs(n)[1]) == loop_vars["lstm.kernel"][0]]
    if len(mms) != 1 or _split_users(body, mms[0], 4) is None:
        return None
    mm = mms[0]
    bias_add, split = _split_users(body, mm, 4)
    if body.arg_index(body.inputs(bias_add)[1]) != loop_vars["lstm.bias"][0]:
        return None
    x_ref, h_ref = _concat(body, mm, node)
    xn = body.node(body.through(x_ref))
    if xn is None or xn.op not in READ_OPS or \
            body.arg_index(body.inputs(xn)[0]) != in_arg:
        return None
    peep = [d in loop_vars for d in DIAGS]
    if any(peep) and not all(peep):
        return None
    peep = all(peep)
    fb = 0.0
    for u in body.users((split.name, 2), ("Add", "AddV2")):
        other = [r for r in body.inputs(u) if r != (split.name, 2)]
        c = _const(body, other[0]) if len(other) == 1 else None
        if c is not None:
            fb = c
    # clips: one on the projection output (proj_clip), one on c (cell_clip)
    proj_mm = None
    if "projection" in loop_vars:
        proj = [n for n in body.nodes.values() if n.op == "MatMul" and
                body.arg_index(body.inputs(n)[1]) == loop_vars["projection"][0]]
        if len(proj) != 1:
            return None
        proj_mm = proj[0]
    cell_clip = proj_clip = None
    for n in body.nodes.values():
        if n.op == "Maximum":
            clip = _clip_of(body, (n.name, 0))
            if clip is None:
                return None
            src = body.node(clip[0])
            if proj_mm is not None and src is proj_mm:
                proj_clip = clip[1]
            else:
                cell_clip = clip[1]
    h_arg = body.arg_index(h_ref)
    if h_arg is None or _ret_index(body, body.through(
            body.ref(body.ret[h_arg]))) != h_arg:
        return None
    states = []
    mask_old = {body.arg_index(old) for old, _ in body.masks.values()}
    for k, t in enumerate(ins):
        if k in (h_arg, in_arg) or k in mask_old or k >= len(body.ret) or \
                gv.var(t) is not None:
            continue
        try:
            _zero_state(gv, t, node)
        except Unsupported:
            continue
        if gv.shape(t) and len(gv.shape(t)) == 2:
            states.append(k)
    if len(states) != 1:
        return None
    c_arg = states[0]
    _zero_state(gv, ins[h_arg], node)
    want = body.loop_ops + Counter({"ConcatV2": 1, "MatMul": 1 + (proj_mm is not None),
                              "BiasAdd": 1, "Split": 1, "Add": 2 + 3 * peep, "Sigmoid": 3,
                              "Tanh": 2, "Mul": 3 + 3 * peep})
    clips = (cell_clip is not None) + (proj_clip is not None)
    if clips:
        want += Counter({"Minimum": clips, "Maximum": clips})
    got = body.op_counts()
    if got != want:
        raise Unsupported(f"While {node.name!r}: LSTMCell body ops {dict(got - want)} "
                          f"extra, {dict(want - got)} missing for peepholes={peep}, "
                          f"cell_clip={cell_clip}, num_proj={proj_mm is not None}")
    kernel = np.asarray(loop_vars["lstm.kernel"][1].value)
    units = kernel.shape[1] // 4
    num_proj = None
    if proj_mm is not None:
        num_proj = int(np.asarray(loop_vars["projection"][1].value).shape[1])
    order = ["lstm.kernel", "lstm.bias"] + (list(DIAGS) if peep else []) + \
        (["projection"] if proj_mm is not None else [])
    weights = [Weight(i, np.asarray(loop_vars[k][1].value), loop_vars[k][1],
                      note="TF LSTMCell layout, computed as TF does (TfLSTMCell)")
               for i, k in enumerate(order)]
    seq, seq_nodes = _sequence_output(gv, loop, _output_list(body, {"h": body.through(
        body.ref(body.ret[h_arg]))}), time_major)
    outputs = [seq or loop.out(h_arg), loop.out(c_arg), loop.out(h_arg)]
    dtype = kernel.dtype.name
    seqs = bool(seq)

    def make(n):
        from tb_varmap.convert.family_layers import TfLSTMCell

        cell = TfLSTMCell(units, forget_bias=fb, use_peepholes=peep, cell_clip=cell_clip,
                          num_proj=num_proj, proj_clip=proj_clip, dtype=dtype)
        return keras.layers.RNN(cell, return_sequences=seqs, return_state=True,
                                go_backwards=back, name=n, dtype=dtype)

    return Emit(make, [x], outputs, list(loop.nodes) + seq_nodes, name=loop.layer_name,
                weights=weights, standard=False)
