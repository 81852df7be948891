"""tf.compat.v1.nn.dynamic_rnn over LSTMCell / BasicLSTMCell / GRUCell (one cell or a
MultiRNNCell), as a control-flow-v2 While with the cell in its body function →
keras.layers.LSTM / GRU(reset_after=False), or RNN(StackedRNNCells) for stacked cells.

The pattern claims the While (TensorList scaffolding inside) and the output
TensorListStack + transpose. A time-reversed input (the bw half of
bidirectional_dynamic_rnn) becomes go_backwards=True; its sequence output is the loop's
(processing order), as Keras returns it, and TF's reverse after it stays a separate op. Weights follow DESIGN.md: LSTM gates i, j, f, o → i, f, c, o
with forget_bias (a Const in the body) folded into the f bias; GRU r, u → z(=u), r, h.
An LSTMCell with peepholes / cell_clip / num_proj becomes keras RNN over the custom
TfLSTMCell (rnn_custom.py); anything else (sequence_length masks, other activations)
makes the pattern refuse with the ops it did not expect.
"""

from collections import Counter

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.handlers.common import skip_identity
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register_pattern

WHILE_OPS = ("While", "StatelessWhile")
PASS = ("Identity", "ReadVariableOp", "Snapshot")
# ops one cell puts in the loop body (Add and AddV2 counted as "Add")
CELL_OPS = {
    "lstm": Counter({"ConcatV2": 1, "MatMul": 1, "BiasAdd": 1, "Split": 1, "Add": 2,
                     "Sigmoid": 3, "Tanh": 2, "Mul": 3}),
    "gru": Counter({"ConcatV2": 2, "MatMul": 2, "BiasAdd": 2, "Sigmoid": 1, "Split": 1,
                    "Mul": 3, "Tanh": 1, "Sub": 1, "Add": 1}),
}
LOOP_OPS = Counter({"Add": 2})                 # time and loop counter increments
SCAFFOLD = {"Const", "Identity", "NoOp", "TensorListGetItem", "TensorListSetItem",
            "ReadVariableOp"}
HINTS = {"ClipByValue": "cell_clip", "Maximum": "cell_clip", "Minimum": "cell_clip",
         "Select": "sequence_length masking", "SelectV2": "sequence_length masking"}


class Body:
    """A While body FunctionDef: args, nodes, returned tensors (by loop-var index)."""

    def __init__(self, fdef):
        self.args = [a.name for a in fdef.signature.input_arg]
        self.nodes = {n.name: n for n in fdef.node_def}
        self.ret = [fdef.ret[a.name] for a in fdef.signature.output_arg]
        self.consumers = {}
        for n in fdef.node_def:
            for i, t in enumerate(n.input):
                if not t.startswith("^"):
                    self.consumers.setdefault(self.ref(t), []).append((n, i))

    @staticmethod
    def ref(t):
        """'n:out:2' → ('n', 2); an arg name → (arg, 0)."""
        parts = t.split(":")
        return (parts[0], int(parts[2]) if len(parts) == 3 else 0)

    def node(self, ref):
        return self.nodes.get(ref[0])

    def through(self, ref):
        """Follow Identity / ReadVariableOp inside the body."""
        n = self.node(ref)
        while n is not None and n.op in PASS:
            ref = self.ref(n.input[0])
            n = self.node(ref)
        return ref

    def arg_index(self, ref):
        ref = self.through(ref)
        return self.args.index(ref[0]) if ref[0] in self.args else None

    def inputs(self, n):
        return [self.ref(t) for t in n.input if not t.startswith("^")]

    def users(self, ref, op=None):
        return [n for n, _ in self.consumers.get(ref, []) if op is None or n.op in op]

    def op_counts(self):
        c = Counter()
        for n in self.nodes.values():
            if n.op not in SCAFFOLD:
                c["Add" if n.op == "AddV2" else n.op] += 1
        return c


def _function(gv, name):
    for f in gv.graph_def.library.function:
        if f.signature.name == name:
            return f
    raise Unsupported(f"While body function {name!r} is not in the graph's library")




def _perm_102(gv, node):
    try:
        perm = gv.static(gv.inputs_of(node)[1]).tolist()
    except Unsupported:
        return False
    return perm == [1, 0, 2]


@register_pattern("dynamic_rnn", ops=WHILE_OPS)
def dynamic_rnn(gv, node):
    import keras

    ins = gv.inputs_of(node)
    body = Body(_function(gv, node.attr["body"].func.name))
    if len(body.args) != len(ins) or len(body.ret) != len(ins):
        return None
    x, in_arg, back = _input_sequence(gv, body, ins)
    if x is None:
        return None
    masks = sorted(n.name for n in body.nodes.values() if n.op in ("Select", "SelectV2"))
    if masks:
        raise Unsupported(f"While {node.name!r}: dynamic_rnn with sequence_length (Select "
                          f"ops {masks[:2]} in the loop body): a Keras LSTM/GRU would need "
                          "a mask input; not converted (feed full-length sequences and "
                          "drop sequence_length, or keep the loop as custom ops)")
    try:
        cells = _cells(gv, body, ins, in_arg, node)
        if cells:
            _check_ops(body, cells, node)
    except Unsupported as e:
        from tb_varmap.convert.handlers.rnn_custom import tf_lstm_cell

        custom = tf_lstm_cell(gv, node, body, ins, x, in_arg, back)
        if custom is None:
            raise Unsupported(f"{e}{_unexpected(body, ins, gv)}") from None
        return custom
    if not cells:
        return None
    for c in cells:
        for k in c["state_args"]:
            _zero_state(gv, ins[k], node)
    out_arg = _output_list(body, cells[-1])
    seq, seq_nodes = _sequence_output(gv, node, out_arg)
    dtype = cells[0]["weights"][0][1].dtype.name
    weights, outputs = [], [seq] if seq else []
    for j, c in enumerate(cells):      # 3 Keras weights per cell: kernel, recurrent, bias
        weights += [Weight(3 * j + slot, v, b, note=note)
                    for slot, v, b, note in c["weights"]]
        outputs += [f"{node.name}:{k}" for k in c["state_outputs"]]
    if not seq:                         # last output = the top cell's final h
        outputs.insert(0, f"{node.name}:{cells[-1]['state_outputs'][0]}")
    seqs = bool(seq)

    def make(n):
        if len(cells) == 1:
            c = cells[0]
            if c["kind"] == "lstm":
                return keras.layers.LSTM(c["units"], return_sequences=seqs,
                                         return_state=True, go_backwards=back, name=n,
                                         dtype=dtype)
            return keras.layers.GRU(c["units"], reset_after=False, return_sequences=seqs,
                                    return_state=True, go_backwards=back, name=n,
                                    dtype=dtype)
        stack = [keras.layers.LSTMCell(c["units"], dtype=dtype) if c["kind"] == "lstm"
                 else keras.layers.GRUCell(c["units"], reset_after=False, dtype=dtype)
                 for c in cells]
        return keras.layers.RNN(keras.layers.StackedRNNCells(stack), return_sequences=seqs,
                                return_state=True, go_backwards=back, name=n, dtype=dtype)

    return Emit(make, [x], outputs, [node.name] + seq_nodes,
                name=node.name.rsplit("/", 1)[0] if "/" in node.name else node.name,
                weights=weights)


def _input_sequence(gv, body, ins):
    """The [batch, time, ...] tensor the loop reads step by step, and its loop arg."""
    found = []
    for k, t in enumerate(ins):
        t, n = skip_identity(gv, t)
        if n.op != "TensorListFromTensor" or not gv.is_live(t):
            continue
        src, tn = skip_identity(gv, gv.inputs_of(n)[0])
        if tn.op != "Transpose" or not _perm_102(gv, tn):
            raise Unsupported(f"While {n.name!r}: input list is not a batch-major "
                              "sequence transposed to time-major (time_major=True?)")
        x, back = gv.inputs_of(tn)[0], False
        _, rn = skip_identity(gv, x)
        if rn.op == "ReverseV2" and _time_axis(gv, rn):    # bidirectional_dynamic_rnn bw
            x, back = gv.inputs_of(rn)[0], True
        found.append((x, k, back))
    if len(found) != 1:
        return None, None, False
    return found[0]


def _time_axis(gv, rev):
    try:
        return np.ravel(gv.static(gv.inputs_of(rev)[1])).tolist() == [1]
    except Unsupported:
        return False


def _binding(gv, body, ins, ref, roles, what, node):
    k = body.arg_index(ref)
    b = gv.var(ins[k]) if k is not None else None
    if b is None:
        raise Unsupported(f"While {node.name!r}: the {what} is not a checkpoint variable")
    if b.role and b.role not in roles:
        raise Unsupported(f"While {node.name!r}: variable {b.name!r} has role {b.role!r}, "
                          f"expected {sorted(roles)}")
    return b


def _cells(gv, body, ins, in_arg, node):
    """Cells in stack order, each a dict: kind, units, weights [(value, binding, note)],
    state_args (loop args of the state, Keras order), state_outputs, h (body ref)."""
    cells = {}
    for n in body.nodes.values():
        if n.op != "MatMul":
            continue
        if n.attr["transpose_a"].b or n.attr["transpose_b"].b:
            raise Unsupported(f"While {node.name!r}: {n.name} has transposed operands")
        k = body.arg_index(body.inputs(n)[1])
        b = gv.var(ins[k]) if k is not None else None
        role = b.role if b is not None else None
        if role in ("lstm.kernel", None) and _split_users(body, n, 4):
            cell = _lstm_cell(gv, body, ins, n, node)
        elif role in ("gru.gates_kernel", None) and _is_gru_gates(body, n):
            cell = _gru_cell(gv, body, ins, n, node)
        else:
            continue
        cells[cell["x"]] = cell
    # order: the first reads the input list item, each next one the previous h
    order, cur = [], None
    for c in cells.values():
        xn = body.node(body.through(c["x"]))
        if xn is not None and xn.op == "TensorListGetItem" and \
                body.arg_index(body.inputs(xn)[0]) == in_arg:
            cur = c
    while cur is not None:
        order.append(cur)
        cur = cells.get(cur["h"])
    if len(order) != len(cells):
        raise Unsupported(f"While {node.name!r}: cells do not form one stack fed by the "
                          "input sequence")
    return order


def _split_users(body, matmul, num):
    add = body.users((matmul.name, 0), ("BiasAdd",))
    if len(add) != 1:
        return None
    split = body.users((add[0].name, 0), ("Split",))
    if len(split) != 1 or split[0].attr["num_split"].i != num:
        return None
    return add[0], split[0]


def _concat(body, matmul, node):
    c = body.node(body.inputs(matmul)[0])
    if c is None or c.op != "ConcatV2" or len(body.inputs(c)) != 3:
        raise Unsupported(f"While {node.name!r}: {matmul.name} does not read "
                          "concat([x, h])")
    x, h, _ = body.inputs(c)
    return x, h


def _ret_index(body, ref):
    for i, t in enumerate(body.ret):
        if body.through(body.ref(t)) == ref:
            return i
    return None


def _lstm_cell(gv, body, ins, matmul, node):
    bias_add, split = _split_users(body, matmul, 4)
    x, h = _concat(body, matmul, node)
    kb = _binding(gv, body, ins, body.inputs(matmul)[1], {"lstm.kernel"}, "LSTM kernel",
                  node)
    bb = _binding(gv, body, ins, body.inputs(bias_add)[1], {"lstm.bias"}, "LSTM bias",
                  node)
    fb, f_users = 0.0, body.users((split.name, 2))
    for u in f_users:
        if u.op in ("Add", "AddV2"):
            other = [r for r in body.inputs(u) if r != (split.name, 2)]
            c = body.node(other[0]) if len(other) == 1 else None
            if c is None or c.op != "Const":
                raise Unsupported(f"While {node.name!r}: forget gate add {u.name} is not "
                                  "a constant forget_bias")
            import tensorflow as tf
            fb = float(tf.make_ndarray(c.attr["value"].tensor).reshape(()))
    h_arg = body.arg_index(h)
    h_ret = _ret_index(body, _h_new(body, split, node))
    c_arg, c_ret = _c_state(body, split, node)
    if h_arg is None or h_arg != h_ret or c_arg is None or c_arg != c_ret:
        raise Unsupported(f"While {node.name!r}: LSTM state (c, h) is not carried by "
                          "the loop as BasicLSTMCell/LSTMCell do")
    w, b = np.asarray(kb.value), np.asarray(bb.value)
    u = w.shape[1] // 4
    n_in = w.shape[0] - u
    if w.shape[1] != 4 * u or b.shape != (4 * u,) or n_in <= 0:
        raise Unsupported(f"While {node.name!r}: LSTM kernel {list(w.shape)} / bias "
                          f"{list(b.shape)} do not fit [in+u, 4u] / [4u]")

    def gates(m):                       # i, j, f, o → i, f, c(=j), o
        return np.ascontiguousarray(np.concatenate(
            [m[..., :u], m[..., 2 * u:3 * u], m[..., u:2 * u], m[..., 3 * u:]], axis=-1))

    bias = gates(b)
    bias[u:2 * u] += np.asarray(fb, dtype=bias.dtype)
    note = "gates i, j, f, o reordered to Keras i, f, c, o"
    return {"kind": "lstm", "units": u, "x": x, "h": _h_new(body, split, node),
            "weights": [(0, gates(w[:n_in]), kb, note + "; rows [:in] (input kernel)"),
                        (1, gates(w[n_in:]), kb, note + "; rows [in:] (recurrent kernel)"),
                        (2, bias, bb, note + f"; forget_bias {fb:g} added to the f gate")],
            "state_args": [h_arg, c_arg], "state_outputs": [h_arg, c_arg]}


def _h_new(body, split, node):
    """h = sigmoid(o) * tanh(c_new): the Mul fed by Sigmoid(split:3)."""
    for s in body.users((split.name, 3), ("Sigmoid",)):
        for m in body.users((s.name, 0), ("Mul",)):
            return (m.name, 0)
    raise Unsupported(f"While {node.name!r}: no sigmoid(o) * tanh(c) output in the cell")


def _c_state(body, split, node):
    """(loop arg of c_prev, loop-var index that returns c_new)."""
    f = (split.name, 2)
    adds = body.users(f, ("Add", "AddV2"))
    if adds:
        f = (adds[0].name, 0)
    for s in body.users(f, ("Sigmoid",)):
        for m in body.users((s.name, 0), ("Mul",)):
            other = [r for r in body.inputs(m) if r != (s.name, 0)]
            c_arg = body.arg_index(other[0]) if len(other) == 1 else None
            for a in body.users((m.name, 0), ("Add", "AddV2")):
                return c_arg, _ret_index(body, (a.name, 0))
    raise Unsupported(f"While {node.name!r}: no sigmoid(f) * c_prev in the cell")


def _is_gru_gates(body, matmul):
    add = body.users((matmul.name, 0), ("BiasAdd",))
    if len(add) != 1:
        return False
    sig = body.users((add[0].name, 0), ("Sigmoid",))
    return len(sig) == 1 and len(body.users((sig[0].name, 0), ("Split",))) == 1


def _gru_cell(gv, body, ins, matmul, node):
    x, h = _concat(body, matmul, node)
    bias_add = body.users((matmul.name, 0), ("BiasAdd",))[0]
    sig = body.users((bias_add.name, 0), ("Sigmoid",))[0]
    split = body.users((sig.name, 0), ("Split",))[0]
    r_mul = body.users((split.name, 0), ("Mul",))
    cand = body.users((r_mul[0].name, 0), ("ConcatV2",)) if r_mul else []
    c_mm = body.users((cand[0].name, 0), ("MatMul",)) if cand else []
    c_add = body.users((c_mm[0].name, 0), ("BiasAdd",)) if c_mm else []
    if not c_add or body.inputs(cand[0])[0] != x:
        raise Unsupported(f"While {node.name!r}: GRU candidate concat([x, r * h]) @ "
                          "kernel + bias not found")
    gkb = _binding(gv, body, ins, body.inputs(matmul)[1], {"gru.gates_kernel"},
                   "GRU gates kernel", node)
    g = np.asarray(gkb.value)
    gb = _binding(gv, body, ins, body.inputs(bias_add)[1], {"gru.gates_bias"},
                  "GRU gates bias", node)
    cb = _binding(gv, body, ins, body.inputs(c_mm[0])[1], {"gru.candidate_kernel"},
                  "GRU candidate kernel", node)
    ccb = _binding(gv, body, ins, body.inputs(c_add[0])[1], {"gru.candidate_bias"},
                   "GRU candidate bias", node)
    c, bg, bc = np.asarray(cb.value), np.asarray(gb.value), np.asarray(ccb.value)
    u = c.shape[1]
    n_in = c.shape[0] - u
    if g.shape != (n_in + u, 2 * u) or bg.shape != (2 * u,) or bc.shape != (u,):
        raise Unsupported(f"While {node.name!r}: GRU shapes gates {list(g.shape)}, "
                          f"candidate {list(c.shape)} do not fit [in+u, 2u] / [in+u, u]")
    h_arg = body.arg_index(h)
    h_ret = _ret_index(body, _gru_h_new(body, split, node))
    if h_arg is None or h_arg != h_ret:
        raise Unsupported(f"While {node.name!r}: GRU state is not carried by the loop")

    def zrh(rows):                      # Keras z(=TF u), r, h
        return np.ascontiguousarray(np.concatenate(
            [g[rows, u:], g[rows, :u], c[rows]], axis=1))

    kernel, rec = zrh(slice(0, n_in)), zrh(slice(n_in, None))
    bias = np.ascontiguousarray(np.concatenate([bg[u:], bg[:u], bc]))
    gk = "gates kernel (r, u) and candidate kernel joined as Keras z, r, h"
    return {"kind": "gru", "units": u, "x": x, "h": _gru_h_new(body, split, node),
            "weights": [(0, kernel, gkb, gk + "; rows [:in]"),
                        (0, kernel, cb, gk + "; rows [:in]"),
                        (1, rec, gkb, gk + "; rows [in:]"),
                        (1, rec, cb, gk + "; rows [in:]"),
                        (2, bias, gb, "gates bias (r, u) + candidate bias as z, r, h"),
                        (2, bias, ccb, "gates bias (r, u) + candidate bias as z, r, h")],
            "state_args": [h_arg], "state_outputs": [h_arg]}


def _gru_h_new(body, split, node):
    """h = u * h_prev + (1 - u) * c: the Add over the two Muls reading split:1."""
    for m in body.users((split.name, 1), ("Mul",)):
        for a in body.users((m.name, 0), ("Add", "AddV2")):
            return (a.name, 0)
    raise Unsupported(f"While {node.name!r}: no u * h + (1 - u) * c in the GRU cell")


def _unexpected(body, ins, gv):
    """Hint naming what makes the body more than a plain cell (peepholes, clip, ...)."""
    known = set(SCAFFOLD) | {op for c in CELL_OPS.values() for op in c} | {"AddV2"}
    odd = sorted({n.op for n in body.nodes.values() if n.op not in known})
    n_vars = sum(1 for t in ins if gv.var(t) is not None)
    hints = sorted({HINTS[op] for op in odd if op in HINTS})
    return (f" (body ops beyond LSTM/GRU cells: {odd or 'none'}"
            + (f", i.e. {', '.join(hints)}" if hints else "")
            + f"; {n_vars} variables enter the loop: peephole or projection weights need "
              "a custom cell)")


def _check_ops(body, cells, node):
    want = LOOP_OPS.copy()
    for c in cells:
        want.update(CELL_OPS[c["kind"]])
    got = body.op_counts()
    extra, missing = got - want, want - got
    if extra or missing:
        hints = sorted({HINTS.get(op, "") for op in extra} - {""})
        raise Unsupported(
            f"While {node.name!r}: loop body is not plain "
            f"{'+'.join(c['kind'].upper() for c in cells)} cells: unexpected ops "
            f"{dict(extra)}, missing {dict(missing)}"
            + (f" (looks like {', '.join(hints)}; needs a custom cell)" if hints else
               " (peepholes, projection or custom activations need a custom cell)"))


def _zero_state(gv, t, node):
    try:
        value = gv.static(t)
    except Unsupported:
        value = None
        n = gv.nodes[node_of(t)]
        if n.op == "Fill":
            fill = gv.const(gv.inputs_of(n)[1])
            value = fill if fill is not None else None
    if value is None or np.any(np.asarray(value) != 0):
        raise Unsupported(f"While {node.name!r}: initial state {t!r} is not zeros "
                          "(initial_state given); Keras layers start from zeros here")


def _output_list(body, top):
    """Loop arg of the TensorList the top cell's h is written into (None if none)."""
    for s in body.users(top["h"], ("TensorListSetItem",)):
        return body.arg_index(body.inputs(s)[0])
    return None


def _sequence_output(gv, node, out_arg):
    """transpose(TensorListStack(While:k)) → (its tensor, nodes to claim), or (None, [])."""
    if out_arg is None:
        return None, []
    cur, claimed = f"{node.name}:{out_arg}", []
    for _ in range(5):
        cons = gv.consumers.get(cur, [])
        if len(cons) != 1:
            return None, []
        n = gv.nodes[cons[0][0]]
        claimed.append(n.name)
        if n.op == "Transpose":
            if not _perm_102(gv, n):
                return None, []
            return n.name + ":0", claimed
        if n.op not in ("Identity", "TensorListStack"):
            return None, []
        cur = n.name + ":0"
    return None, []


@register_pattern("v1_loop", ops=("Enter", "RefEnter"))
def v1_loop(gv, node):
    """TF1 control-flow loops (Enter/Merge/Switch/NextIteration/Exit) are not converted;
    say precisely what the loop holds instead of failing op by op."""
    frame = gv.attr(node, "frame_name", "") or ""
    scope = node.name.rsplit("/", 1)[0] + "/"
    ops = Counter(n.op for name, n in gv.nodes.items() if name.startswith(scope))
    cell = ("LSTM cell (MatMul + BiasAdd + Split into 4 gates)"
            if any(n.op == "Split" and n.attr["num_split"].i == 4
                   for name, n in gv.nodes.items() if name.startswith(scope))
            else "cell ops " + ", ".join(sorted(o for o in ops if o in ("MatMul", "Tanh",
                                                                         "Sigmoid"))))
    extra = " and sequence_length masking (Select)" if ops.get("Select") else ""
    raise Unsupported(
        f"TF1 control-flow loop '{scope[:-1]}' (frame {frame!r}; Enter/Merge/Switch/Exit, "
        f"TensorArrayV3) holding a {cell}{extra}: only control-flow-v2 While loops "
        "(TF >= 1.15 / TF2 dynamic_rnn) map to Keras LSTM/GRU; re-export the graph with "
        "a newer TF or tag the loop's variables custom.param")
