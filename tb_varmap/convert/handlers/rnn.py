"""tf.compat.v1.nn.dynamic_rnn over LSTMCell / BasicLSTMCell / GRUCell / BasicRNNCell /
contrib's LSTMBlockCell / GRUBlockCell (one cell or a MultiRNNCell) → keras.layers.LSTM /
GRU(reset_after=False) / SimpleRNN, or RNN(StackedRNNCells) for stacked cells. Two loop
forms, one converter:
- control-flow v2 (TF >= 1.15 / TF2): a `While` with the cell in its body function, input
  and output as TensorLists;
- control-flow v1 (what TF 1.x wrote): an Enter/Merge/Switch/NextIteration/Exit frame in the
  main graph with TensorArrayV3 input/output, often over ref variables.
Both are seen through `Body` (args = loop variables then loop invariants, nodes, returned
values); a `Loop` knows the outer tensors (inputs, final values, claimed nodes).

A time-reversed input (the bw half of bidirectional_dynamic_rnn) becomes go_backwards=True;
its sequence output is the loop's (processing order), as Keras returns it, and TF's reverse
after it stays a separate op. `sequence_length` (Select(time >= length, old, new) around
each output and state) and `time_major` inputs keep the standard Keras layer inside the
weightless `DynamicRNN` wrapper (family_layers), which turns lengths into a Keras mask with
zero outputs past the end. A DropoutWrapper whose rate is 0 at inference (keep_prob 1.0)
is the identity and passes through. Weights follow DESIGN.md: LSTM gates i, j, f, o → i, f, c, o
with forget_bias (a Const in the body) folded into the f bias; GRU r, u → z(=u), r, h.
An LSTMCell with peepholes / cell_clip / num_proj becomes keras RNN over the custom
TfLSTMCell (rnn_custom.py); anything else (other activations, nested loops) makes the
pattern refuse with the ops it did not expect.
"""

from collections import Counter
from dataclasses import replace

import numpy as np

from tb_varmap.convert.graph import node_of, scope_of
from tb_varmap.convert.handlers.common import skip_identity
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register_pattern

WHILE_OPS = ("While", "StatelessWhile")
PASS = ("Identity", "ReadVariableOp", "Snapshot")
READ_OPS = ("TensorListGetItem", "TensorArrayReadV3")
WRITE_OPS = {"TensorListSetItem": 0, "TensorArrayWriteV3": 3}   # op -> input of the list var
MASK_OPS = ("Select", "SelectV2")
# ops one cell puts in the loop body (Add and AddV2 counted as "Add")
CELL_OPS = {
    "lstm": Counter({"ConcatV2": 1, "MatMul": 1, "BiasAdd": 1, "Split": 1, "Add": 2,
                     "Sigmoid": 3, "Tanh": 2, "Mul": 3}),
    "gru": Counter({"ConcatV2": 2, "MatMul": 2, "BiasAdd": 2, "Sigmoid": 1, "Split": 1,
                    "Mul": 3, "Tanh": 1, "Sub": 1, "Add": 1}),
}
SCAFFOLD = {"Const", "Identity", "NoOp", "TensorListGetItem", "TensorListSetItem",
            "ReadVariableOp", "TensorArrayReadV3", "TensorArrayWriteV3"}
HINTS = {"ClipByValue": "cell_clip", "Maximum": "cell_clip", "Minimum": "cell_clip",
         "Select": "an unrecognized Select", "SelectV2": "an unrecognized Select"}
# control-flow v1 plumbing
ENTER, MERGE = ("Enter", "RefEnter"), ("Merge", "RefMerge")
SWITCH, NEXT = ("Switch", "RefSwitch"), ("NextIteration", "RefNextIteration")
EXIT = ("Exit", "RefExit")
V1_PLUMBING = set(ENTER + MERGE + SWITCH + NEXT + EXIT) | {"LoopCond"}


class Body:
    """A loop body: args (loop variables, then invariants), nodes, returned values (by
    loop-variable index). From a While's FunctionDef (`of_function`) or a v1 frame."""

    def __init__(self, args, nodes, ret):
        self.args, self.nodes, self.ret = args, nodes, ret
        self.consumers = {}
        for n in nodes.values():
            for i, t in enumerate(n.input):
                if not t.startswith("^"):
                    self.consumers.setdefault(self.ref(t), []).append((n, i))
        self.masks, self.dropouts = {}, {}
        self.masks = self._masks()
        self.dropouts = self._dropouts()

    @classmethod
    def of_function(cls, fdef):
        return cls([a.name for a in fdef.signature.input_arg],
                   {n.name: n for n in fdef.node_def},
                   [fdef.ret[a.name] for a in fdef.signature.output_arg])

    def ref(self, t):
        """'n:arg:2' (function body: output arg `arg`, item 2) or 'n:2' (graph) → ('n', flat
        output index); a bare name → (name, 0)."""
        parts = t.split(":")
        if len(parts) == 3:
            return parts[0], _arg_offset(self.nodes.get(parts[0]), parts[1]) + int(parts[2])
        if len(parts) == 2 and parts[1].isdigit():
            return parts[0], int(parts[1])
        return parts[0], 0

    def node(self, ref):
        return self.nodes.get(ref[0])

    def through(self, ref, masks=True):
        """Follow Identity / ReadVariableOp, dropout (identity at inference, checked by
        `_dropout_rates`) and, with `masks`, the sequence_length Selects to their new value
        inside the body."""
        n = self.node(ref)
        while n is not None and (n.op in PASS or n.name in self.dropouts or
                                 (masks and n.name in self.masks)):
            if n.name in self.dropouts:
                ref = self.dropouts[n.name][0]
            else:
                ref = self.inputs(n)[0 if n.op in PASS else 2]
            n = self.node(ref)
        return ref

    def passes(self, ref):
        """The values that pass `ref` on unchanged: sequence_length / dropout Selects."""
        out = []
        for u in self.users(ref):
            if u.name in self.masks and self.inputs(u)[2] == ref:
                out.append((u.name, 0))
            for sel, (x, _, nodes) in self.dropouts.items():
                if x == ref and u.name in nodes:
                    out.append((sel, 0))
        return list(dict.fromkeys(out))

    def arg_index(self, ref):
        ref = self.through(ref)
        return self.args.index(ref[0]) if ref[0] in self.args else None

    def inputs(self, n):
        return [self.ref(t) for t in n.input if not t.startswith("^")]

    def users(self, ref, op=None):
        return [n for n, _ in self.consumers.get(ref, []) if op is None or n.op in op]

    @property
    def loop_ops(self):
        """The loop's own ops: counters (time, iterations) returned as arg + const."""
        n = 0
        for k, r in enumerate(self.ret):
            add = self.node(self.through(self.ref(r), masks=False))
            if add is not None and add.op in ("Add", "AddV2"):
                ins = [self.arg_index(i) for i in self.inputs(add)]
                consts = [self.node(i) for i in self.inputs(add)]
                n += k in ins and any(c is not None and c.op == "Const" for c in consts)
        return Counter({"Add": n})

    def op_counts(self):
        skip = set(self.masks) | {ge.name for _, ge in self.masks.values()}
        skip |= {n for _, _, nodes in self.dropouts.values() for n in nodes}
        c = Counter()
        for n in self.nodes.values():
            if n.op not in SCAFFOLD and n.name not in skip:
                c["Add" if n.op == "AddV2" else n.op] += 1
        return c

    def _masks(self):
        """dynamic_rnn(sequence_length=L) passes each output and state through
        Select(time >= L, old, new): {select name: (old ref, the GreaterEqual)}."""
        found = {}
        for n in self.nodes.values():
            ins = self.inputs(n)
            if n.op not in MASK_OPS or len(ins) != 3:
                continue
            ge = self.node(ins[0])
            if ge is None or ge.op != "GreaterEqual":
                continue
            t, length = self.inputs(ge)
            if self.arg_index(t) is not None and self.arg_index(length) is not None:
                found[n.name] = (ins[1], ge)
        return found


    def _dropouts(self):
        """tf.nn.dropout as DropoutWrapper writes it in a cell: SelectV2(random >= rate,
        x / (1 - rate), 0) → {select name: (x ref, rate ref, its nodes)}; with rate 0 at
        inference (keep_prob 1.0) it is the identity."""
        found = {}
        for n in self.nodes.values():
            ins = self.inputs(n)
            if n.op not in MASK_OPS or len(ins) != 3:
                continue
            ge, div, zero = (self.node(r) for r in ins)
            if ge is None or ge.op != "GreaterEqual" or div is None or \
                    div.op not in ("RealDiv", "Mul") or zero is None or zero.op != "Const":
                continue
            rnd, rate = self.inputs(ge)
            chain = [self.node(rnd)]
            while chain[-1] is not None and chain[-1].op in ("Add", "AddV2", "Mul"):
                chain.append(self.node(self.inputs(chain[-1])[0]))   # uniform min/max
            if chain[-1] is None or chain[-1].op != "RandomUniform":
                continue
            x, scale = self.inputs(div)
            nodes = {n.name, ge.name, div.name, zero.name} | {c.name for c in chain}
            shape = self.node(self.inputs(chain[-1])[0])
            if shape is not None and shape.op == "Shape":
                nodes.add(shape.name)
            for sub in (self.node(scale), self.node(rate)):   # 1 - rate, 1 - keep_prob
                if sub is not None and sub.op == "Sub":
                    nodes.add(sub.name)
                    nodes |= {c.name for c in (self.node(r) for r in self.inputs(sub))
                              if c is not None and c.op == "Const"}
            found[n.name] = (x, rate, nodes)
        return found


def _arg_offset(node, arg):
    """Flat index of output arg `arg`'s first tensor in `node`'s outputs (function bodies
    name outputs by arg: LSTMBlockCell's 'h:0' is output 6)."""
    if node is None:
        return 0
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return 0
    offset = 0
    for a in op_def.output_arg:
        if a.name == arg:
            return offset
        if a.number_attr:
            offset += node.attr[a.number_attr].i
        elif a.type_list_attr:
            offset += len(node.attr[a.type_list_attr].list.type)
        else:
            offset += 1
    return 0


class Loop:
    """The outer side of a loop: name, body, `ins` (outer tensor of each arg), the final
    value of loop variable k (`out(k)`), the graph nodes it covers."""

    def __init__(self, name, body, ins, nodes, outs):
        self.name, self.body, self.ins, self.nodes, self._outs = name, body, ins, nodes, outs

    def out(self, k):
        return self._outs[k]

    @property
    def layer_name(self):
        return scope_of(self.name) or self.name


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
    ins = gv.inputs_of(node)
    body = Body.of_function(_function(gv, node.attr["body"].func.name))
    if len(body.args) != len(ins) or len(body.ret) != len(ins):
        return None
    loop = Loop(node.name, body, ins, [node.name],
                [f"{node.name}:{k}" for k in range(len(ins))])
    return convert_loop(gv, loop)


@register_pattern("dynamic_rnn_v1", ops=ENTER)
def dynamic_rnn_v1(gv, node):
    """A TF1 control-flow-v1 loop: analysed once per frame (the first live Enter); every
    other node of the frame is claimed with it."""
    frame = gv.attr(node, "frame_name", "") or ""
    cache = gv.__dict__.setdefault("_v1_loops", {})
    if frame not in cache:
        try:
            loop = v1_loop(gv, node, frame)
            cache[frame] = convert_loop(gv, loop) or Unsupported(
                f"TF1 control-flow loop {loop.name!r} (frame {frame!r}) is not a "
                f"dynamic_rnn over LSTM / GRU / RNN cells: it holds "
                f"{dict(sorted(loop.body.op_counts().items()))}; only such loops map to "
                "Keras layers")
        except Unsupported as e:
            cache[frame] = e
    hit = cache[frame]
    if isinstance(hit, Exception):
        raise hit
    return hit


def convert_loop(gv, loop):
    """Emit for a dynamic_rnn loop (either form), or None when it is not one."""
    import keras

    body, ins = loop.body, loop.ins
    x, in_arg, back, time_arg, time_major = _input_sequence(gv, loop)
    if x is None:
        return None
    lengths = _lengths(gv, loop, time_arg)
    _dropout_rates(gv, loop)
    if back and not _reverse_fits(gv, back, lengths):
        x, back = back.name + ":0", None    # a reverse that is not the loop's: its own op
    rev, back = back or None, bool(back)    # the reverse op (bw half), go_backwards
    try:
        cells = _cells(gv, body, ins, in_arg, loop)
        if cells:
            _check_ops(body, cells, loop)
    except Unsupported as e:
        from tb_varmap.convert.handlers.rnn_custom import tf_lstm_cell

        custom = tf_lstm_cell(gv, loop, x, in_arg, back, time_major)
        if custom is None:
            raise Unsupported(f"{e}{_unexpected(body, ins, gv)}") from None
        return _dynamic(custom, lengths, time_major,
                        _reversed_output(gv, loop, custom, rev))
    if not cells:
        return None
    for c in cells:
        for k in c["state_args"]:
            _zero_state(gv, ins[k], loop)
    out_arg = _output_list(body, cells[-1])
    seq, seq_nodes = _sequence_output(gv, loop, out_arg, time_major)
    dtype = np.asarray(cells[0]["weights"][0].value).dtype.name
    weights, outputs = [], [seq] if seq else []
    for j, c in enumerate(cells):      # 3 Keras weights per cell: kernel, recurrent, bias
        weights += [replace(w, attr=3 * j + w.attr) for w in c["weights"]]
        outputs += [loop.out(k) for k in c["state_outputs"]]
    if not seq:                         # last output = the top cell's final h
        outputs.insert(0, loop.out(cells[-1]["state_outputs"][0]))
    seqs = bool(seq)

    def make(n):
        if len(cells) == 1:
            c = cells[0]
            if c["kind"] == "rnn":
                return keras.layers.SimpleRNN(c["units"], activation=c["activation"],
                                              return_sequences=seqs, return_state=True,
                                              go_backwards=back, name=n, dtype=dtype)
            if c["kind"] == "lstm":
                return keras.layers.LSTM(c["units"], return_sequences=seqs,
                                         return_state=True, go_backwards=back, name=n,
                                         dtype=dtype)
            return keras.layers.GRU(c["units"], reset_after=False, return_sequences=seqs,
                                    return_state=True, go_backwards=back, name=n,
                                    dtype=dtype)
        stack = [keras.layers.LSTMCell(c["units"], dtype=dtype) if c["kind"] == "lstm"
                 else keras.layers.SimpleRNNCell(c["units"], activation=c["activation"],
                                                 dtype=dtype) if c["kind"] == "rnn"
                 else keras.layers.GRUCell(c["units"], reset_after=False, dtype=dtype)
                 for c in cells]
        return keras.layers.RNN(keras.layers.StackedRNNCells(stack), return_sequences=seqs,
                                return_state=True, go_backwards=back, name=n, dtype=dtype)

    emit = Emit(make, [x], outputs, list(loop.nodes) + seq_nodes, name=loop.layer_name,
                weights=weights)
    return _dynamic(emit, lengths, time_major, _reversed_output(gv, loop, emit, rev))


def _reverse_fits(gv, rev, lengths):
    """A reversed input is the loop's own (go_backwards) when it is ReverseV2 without
    sequence_length, or reverse_sequence by the loop's sequence_length."""
    if rev.op == "ReverseV2":
        return lengths is None
    return lengths is not None and _root(gv, gv.inputs_of(rev)[1]) == _root(gv, lengths)


def _root(gv, t):
    """`t` behind Identity / Cast chains (dynamic_rnn's CheckSeqLen, int casts)."""
    n = gv.nodes[node_of(t)]
    while n.op in ("Identity", "Snapshot", "Cast"):
        t = gv.inputs_of(n)[0]
        n = gv.nodes[node_of(t)]
    return t


def _reversed_output(gv, loop, emit, rev):
    """bidirectional_dynamic_rnn reverses the bw sequence output back the way it reversed
    the input: claim that reverse (the layer then flips its output, DynamicRNN) → True.
    Only a sequence output (not a final state) is flipped."""
    if not rev or not emit.outputs or emit.outputs[0] in loop._outs:
        return False
    cons = [gv.nodes[c] for c, _ in gv.consumers.get(emit.outputs[0], [])]
    if len(cons) != 1 or cons[0].op != rev.op or emit.outputs[0] in gv.outputs:
        return False
    out = cons[0]
    same = (_time_axis(gv, out, _time_axis_of(gv, rev)) if out.op == "ReverseV2" else
            _root(gv, gv.inputs_of(out)[1]) == _root(gv, gv.inputs_of(rev)[1]) and
            gv.attr(out, "seq_dim") == gv.attr(rev, "seq_dim"))
    if not same:
        return False
    emit.outputs[0] = out.name + ":0"
    emit.nodes.append(out.name)
    return True


def _time_axis_of(gv, rev):
    try:
        return int(np.ravel(gv.static(gv.inputs_of(rev)[1]))[0])
    except Unsupported:
        return None


def _dynamic(emit, lengths, time_major, reverse=False):
    """Wrap the RNN layer in DynamicRNN for sequence_length / time_major inputs and for a
    backward layer whose output is flipped back to input order."""
    if lengths is None and not time_major and not reverse:
        return emit
    inner = emit.make

    def make(n):
        from tb_varmap.convert.family_layers import DynamicRNN

        rnn = inner(n + "_rnn")
        if lengths is not None:   # TF writes zeros past each length; the last output
            rnn.zero_output_for_mask = rnn.return_sequences   # is the last valid one
        return DynamicRNN(rnn, time_major=time_major, with_lengths=lengths is not None,
                          reverse_sequences=reverse, name=n)

    emit.make = make
    if lengths is not None:
        emit.inputs = list(emit.inputs) + [lengths]
    return emit


def _input_sequence(gv, loop):
    """(x, arg of the list the body reads, reversed?, time arg, time-major?) for the one
    sequence the loop reads step by step; Nones when there is none."""
    body, ins = loop.body, loop.ins
    found = []
    for r in body.nodes.values():
        if r.op not in READ_OPS:
            continue
        rin = body.inputs(r)
        k = body.arg_index(rin[0 if r.op == "TensorListGetItem" else 2])
        if k is None:
            continue
        _, n = skip_identity(gv, ins[k])
        if n.op == "TensorListFromTensor":
            seq = gv.inputs_of(n)[0]
        elif n.op == "TensorArrayScatterV3":
            seq = gv.inputs_of(n)[2]
        else:
            continue
        if not gv.is_live(seq):
            continue
        _, tn = skip_identity(gv, seq)
        time_major = not (tn.op == "Transpose" and _perm_102(gv, tn))
        if time_major and len(gv.shape(seq) or []) != 3:
            raise Unsupported(f"While {loop.name!r}: input sequence {seq!r} is neither a "
                              "batch-major sequence transposed to time-major nor a rank-3 "
                              "time-major one")
        x, back = (seq, False) if time_major else (gv.inputs_of(tn)[0], False)
        _, rn = skip_identity(gv, x)
        axis = 0 if time_major else 1
        if (rn.op == "ReverseV2" and _time_axis(gv, rn, axis)) or (
                rn.op == "ReverseSequence" and gv.attr(rn, "seq_dim") == axis and
                gv.attr(rn, "batch_dim", 0) == 1 - axis):
            x, back = gv.inputs_of(rn)[0], rn     # bidirectional_dynamic_rnn bw
        found.append((x, body.arg_index(rin[0]), back, body.arg_index(rin[1]), time_major))
    if len(found) != 1:
        return None, None, False, None, False
    return found[0]


def _lengths(gv, loop, time_arg):
    """Outer sequence_length tensor when every Select is dynamic_rnn's copy-through:
    Select(time >= L, zeros, output) for the output and Select(.., state, new) for each
    state; None without Selects."""
    body = loop.body
    if not body.masks:
        return None
    lens = set()
    for sel, (old, ge) in sorted(body.masks.items()):
        t, length = body.inputs(ge)
        if body.arg_index(t) != time_arg:
            raise Unsupported(f"While {loop.name!r}: {sel} selects on {ge.name}, which does "
                              "not compare the loop's time with a sequence_length")
        lens.add(body.arg_index(length))
        rets = [i for i, r in enumerate(body.ret)
                if body.through(body.ref(r), masks=False) == (sel, 0)]
        if rets:
            if body.arg_index(old) != rets[0]:
                raise Unsupported(f"While {loop.name!r}: {sel} does not keep loop "
                                  f"variable {rets[0]} past the sequence end")
        else:
            k = body.arg_index(old)
            if k is None:
                raise Unsupported(f"While {loop.name!r}: {sel} writes a computed value "
                                  "past the sequence end (zeros expected)")
            _zero_state(gv, loop.ins[k], loop, what="output past the sequence end")
    if len(lens) != 1:
        raise Unsupported(f"While {loop.name!r}: Selects compare with {len(lens)} "
                          "different sequence_length tensors")
    lengths = loop.ins[lens.pop()]
    if not gv.is_live(lengths):
        raise Unsupported(f"While {loop.name!r}: sequence_length {lengths!r} does not come "
                          "from the model inputs (add its placeholder to the inputs)")
    return lengths


def _time_axis(gv, rev, axis):
    try:
        return np.ravel(gv.static(gv.inputs_of(rev)[1])).tolist() == [axis]
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
        if n.op in ("LSTMBlockCell", "GRUBlockCell"):
            cell = (_block_cell if n.op == "LSTMBlockCell" else _gru_block_cell)(
                gv, body, ins, n, node)
            cells[body.through(cell["x"])] = cell
            continue
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
        elif role in ("dense.kernel", None) and _simple_activation(body, n):
            cell = _simple_cell(gv, body, ins, n, node)
        else:
            continue
        cells[body.through(cell["x"])] = cell
    # order: the first reads the input list item, each next one the previous h
    order, cur = [], None
    for c in cells.values():
        xn = body.node(body.through(c["x"]))
        if xn is not None and xn.op in READ_OPS and \
                body.arg_index(body.inputs(xn)[0]) == in_arg:
            cur = c
    while cur is not None:
        order.append(cur)
        cur = cells.get(body.through(cur["h"]))
    if len(order) != len(cells):
        raise Unsupported(f"While {node.name!r}: cells do not form one stack fed by the "
                          "input sequence")
    return order


def _block_cell(gv, body, ins, cell, node):
    """contrib's LSTMBlockCell: one op a step (x, cs_prev, h_prev, w, wci, wcf, wco, b →
    i, cs, f, o, ci, co, h), LSTMCell's weight layout."""
    x, cs_prev, h_prev, w, _, _, _, b = body.inputs(cell)
    if gv.attr(cell, "use_peephole", False) or gv.attr(cell, "cell_clip", 3.0) > 0:
        raise Unsupported(f"While {node.name!r}: {cell.name} uses peepholes or cell_clip "
                          f"{gv.attr(cell, 'cell_clip', 3.0)}: not a Keras LSTM cell")
    kb = _binding(gv, body, ins, w, {"lstm.kernel"}, "LSTMBlockCell kernel", node)
    bb = _binding(gv, body, ins, b, {"lstm.bias"}, "LSTMBlockCell bias", node)
    h_arg, c_arg = body.arg_index(h_prev), body.arg_index(cs_prev)
    if h_arg is None or h_arg != _ret_index(body, (cell.name, 6)) or \
            c_arg is None or c_arg != _ret_index(body, (cell.name, 1)):
        raise Unsupported(f"While {node.name!r}: {cell.name}'s state (cs, h) is not "
                          "carried by the loop")
    found = lstm_weights(kb, bb, float(gv.attr(cell, "forget_bias", 1.0)),
                         prefix="LSTMBlockCell; ")
    if found is None:
        raise Unsupported(f"While {node.name!r}: LSTMBlockCell kernel "
                          f"{list(kb.value.shape)} / bias {list(bb.value.shape)} do not fit "
                          "[in+u, 4u] / [4u]")
    u, weights = found
    return {"kind": "lstm", "units": u, "x": x, "h": (cell.name, 6), "weights": weights,
            "state_args": [h_arg, c_arg], "state_outputs": [h_arg, c_arg],
            "ops": Counter({"LSTMBlockCell": 1})}


def _simple_activation(body, matmul):
    """BasicRNNCell: activation(concat([x, h]) @ W + b) → (BiasAdd, activation) or None."""
    from tb_varmap.convert.handlers.common import ACTIVATIONS

    add = body.users((matmul.name, 0), ("BiasAdd",))
    act = body.users((add[0].name, 0)) if len(add) == 1 else []
    if len(act) != 1 or act[0].op not in ACTIVATIONS or act[0].op == "Softmax":
        return None
    return add[0], act[0]


def _simple_cell(gv, body, ins, matmul, node):
    """BasicRNNCell → keras SimpleRNN: kernel [in + u, u] split into kernel / recurrent."""
    from tb_varmap.convert.handlers.common import ACTIVATIONS

    bias_add, act = _simple_activation(body, matmul)
    x, h = _concat(body, matmul, node)
    kb = _binding(gv, body, ins, body.inputs(matmul)[1], {"dense.kernel", "rnn.kernel"},
                  "RNN kernel", node)
    bb = _binding(gv, body, ins, body.inputs(bias_add)[1], {"dense.bias", "bias",
                                                            "rnn.bias"}, "RNN bias", node)
    h_arg = body.arg_index(h)
    if h_arg is None or h_arg != _ret_index(body, (act.name, 0)):
        raise Unsupported(f"While {node.name!r}: RNN state is not carried by the loop")
    w, b = np.asarray(kb.value), np.asarray(bb.value)
    u = w.shape[1] if w.ndim == 2 else 0
    n_in = w.shape[0] - u
    if not u or n_in <= 0 or b.shape != (u,):
        raise Unsupported(f"While {node.name!r}: RNN kernel {list(w.shape)} / bias "
                          f"{list(b.shape)} do not fit [in+u, u] / [u]")
    wi = _positions(w)
    note = "BasicRNNCell kernel split"
    weights = [Weight(0, np.ascontiguousarray(w[:n_in]), kb, note + "; rows [:in]",
                      index=wi[:n_in]),
               Weight(1, np.ascontiguousarray(w[n_in:]), kb, note + "; rows [in:]",
                      index=wi[n_in:]),
               Weight(2, b, bb)]
    return {"kind": "rnn", "units": u, "x": x, "h": (act.name, 0), "weights": weights,
            "state_args": [h_arg], "state_outputs": [h_arg],
            "activation": ACTIVATIONS[act.op],
            "ops": Counter({"ConcatV2": 1, "MatMul": 1, "BiasAdd": 1, act.op: 1})}


def _gru_block_cell(gv, body, ins, cell, node):
    """contrib's GRUBlockCell: one op a step (x, h_prev, w_ru, w_c, b_ru, b_c → r, u, c,
    h), GRUCell's weight layout (gates r, u; candidate)."""
    x, h_prev, w_ru, w_c, b_ru, b_c = body.inputs(cell)
    binds = [_binding(gv, body, ins, ref, roles, what, node) for ref, roles, what in (
        (w_ru, {"gru.gates_kernel"}, "GRUBlockCell gates kernel"),
        (b_ru, {"gru.gates_bias"}, "GRUBlockCell gates bias"),
        (w_c, {"gru.candidate_kernel"}, "GRUBlockCell candidate kernel"),
        (b_c, {"gru.candidate_bias"}, "GRUBlockCell candidate bias"))]
    h_arg = body.arg_index(h_prev)
    if h_arg is None or h_arg != _ret_index(body, (cell.name, 3)):
        raise Unsupported(f"While {node.name!r}: {cell.name}'s state h is not carried by "
                          "the loop")
    found = gru_weights(*binds, prefix="GRUBlockCell; ")
    if found is None:
        raise Unsupported(f"While {node.name!r}: GRUBlockCell weights "
                          f"{[list(np.shape(b.value)) for b in binds]} do not fit [in+u, 2u], "
                          "[2u], [in+u, u], [u]")
    u, weights = found
    return {"kind": "gru", "units": u, "x": x, "h": (cell.name, 3), "weights": weights,
            "state_args": [h_arg], "state_outputs": [h_arg],
            "ops": Counter({"GRUBlockCell": 1})}


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
    found = lstm_weights(kb, bb, fb)
    if found is None:
        raise Unsupported(f"While {node.name!r}: LSTM kernel {list(kb.value.shape)} / bias "
                          f"{list(bb.value.shape)} do not fit [in+u, 4u] / [4u]")
    u, weights = found
    return {"kind": "lstm", "units": u, "x": x, "h": _h_new(body, split, node),
            "weights": weights, "state_args": [h_arg, c_arg],
            "state_outputs": [h_arg, c_arg]}


def lstm_weights(kb, bb, fb, prefix=""):
    """(units, [Weight kernel, recurrent kernel, bias]) for Keras' LSTM cell from a TF
    kernel [in + u, 4u] and bias [4u] (gates i, j, f, o → i, f, c(=j), o; forget_bias
    added to the f bias), each with its index map; None when the shapes do not fit."""
    w, b = np.asarray(kb.value), np.asarray(bb.value)
    u = w.shape[1] // 4 if w.ndim == 2 else 0
    n_in = w.shape[0] - u if u else 0
    if not u or w.shape[1] != 4 * u or b.shape != (4 * u,) or n_in <= 0:
        return None

    def gates(m):                       # i, j, f, o → i, f, c(=j), o
        return np.ascontiguousarray(np.concatenate(
            [m[..., :u], m[..., 2 * u:3 * u], m[..., u:2 * u], m[..., 3 * u:]], axis=-1))

    wi, bi = _positions(w), _positions(b)
    bias = gates(b)
    bias[u:2 * u] += np.asarray(fb, dtype=bias.dtype)
    note = prefix + "gates i, j, f, o reordered to Keras i, f, c, o"
    return u, [Weight(0, gates(w[:n_in]), kb, note + "; rows [:in] (input kernel)",
                      index=gates(wi[:n_in])),
               Weight(1, gates(w[n_in:]), kb, note + "; rows [in:] (recurrent kernel)",
                      index=gates(wi[n_in:])),
               Weight(2, bias, bb, note + f"; forget_bias {fb:g} added to the f gate",
                      index=gates(bi))]


def gru_weights(gkb, gbb, ckb, cbb, prefix=""):
    """(units, [Weight]) for Keras' GRU cell (reset_after=False) from TF's gates kernel
    [in + u, 2u] (r, u), candidate kernel [in + u, u] and their biases: Keras z(=u), r, h.
    Each Keras weight joins two variables: one Weight (with index map) per variable."""
    g, c = np.asarray(gkb.value), np.asarray(ckb.value)
    bg, bc = np.asarray(gbb.value), np.asarray(cbb.value)
    u = c.shape[1] if c.ndim == 2 else 0
    n_in = c.shape[0] - u if u else 0
    if not u or g.shape != (n_in + u, 2 * u) or bg.shape != (2 * u,) or bc.shape != (u,):
        return None

    def zrh(gm, cm, rows=slice(None)):
        return np.ascontiguousarray(np.concatenate([gm[rows, u:], gm[rows, :u], cm[rows]],
                                                   axis=-1))

    def bias_of(gm, cm):
        return np.ascontiguousarray(np.concatenate([gm[u:], gm[:u], cm]))

    gi, ci, bgi, bci = (_positions(a) for a in (g, c, bg, bc))
    none_g, none_c, none_bg, none_bc = (np.full(a.shape, -1) for a in (g, c, bg, bc))
    gk = prefix + "gates kernel (r, u) and candidate kernel joined as Keras z, r, h"
    gb = prefix + "gates bias (r, u) + candidate bias as z, r, h"
    weights = []
    for slot, rows in ((0, slice(0, n_in)), (1, slice(n_in, None))):
        value = zrh(g, c, rows)
        part = "; rows [:in]" if slot == 0 else "; rows [in:]"
        weights += [Weight(slot, value, gkb, gk + part, index=zrh(gi, none_c, rows)),
                    Weight(slot, value, ckb, gk + part, index=zrh(none_g, ci, rows))]
    bias = bias_of(bg, bc)
    weights += [Weight(2, bias, gbb, gb, index=bias_of(bgi, none_bc)),
                Weight(2, bias, cbb, gb, index=bias_of(none_bg, bci))]
    return u, weights


def _positions(a):
    return np.arange(a.size, dtype=np.int64).reshape(a.shape)


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
    found = gru_weights(gkb, gb, cb, ccb)
    if found is None:
        raise Unsupported(f"While {node.name!r}: GRU shapes gates {list(g.shape)}, "
                          f"candidate {list(cb.value.shape)} do not fit [in+u, 2u] / "
                          "[in+u, u]")
    h_arg = body.arg_index(h)
    h_ret = _ret_index(body, _gru_h_new(body, split, node))
    if h_arg is None or h_arg != h_ret:
        raise Unsupported(f"While {node.name!r}: GRU state is not carried by the loop")
    u, weights = found
    return {"kind": "gru", "units": u, "x": x, "h": _gru_h_new(body, split, node),
            "weights": weights, "state_args": [h_arg], "state_outputs": [h_arg]}


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
    want = body.loop_ops.copy()
    for c in cells:
        want.update(c.get("ops") or CELL_OPS[c["kind"]])
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


def _zero_state(gv, t, node, what="initial state"):
    try:
        value = gv.static(t)
    except Unsupported:
        value = None
        n = gv.nodes[node_of(t)]
        if n.op == "Fill":
            fill = gv.const(gv.inputs_of(n)[1])
            value = fill if fill is not None else None
    if value is None or np.any(np.asarray(value) != 0):
        raise Unsupported(f"While {node.name!r}: {what} {t!r} is not zeros"
                          + (" (initial_state given); Keras layers start from zeros here"
                             if what == "initial state" else ""))


def _output_list(body, top):
    """Loop arg of the TensorList / TensorArray flow the top cell's h is written into
    (through sequence_length / dropout Selects), or None."""
    refs = [top["h"]]
    for r in refs:
        refs += [p for p in body.passes(r) if p not in refs]
    for r in refs:
        for s in body.users(r, WRITE_OPS):
            return body.arg_index(body.inputs(s)[WRITE_OPS[s.op]])
    return None


def _dropout_rates(gv, loop):
    """Every dropout in the body must have rate 0 at inference (DropoutWrapper with a
    keep_prob of 1.0, its default or constant): then it is the identity."""
    for sel, (_, rate, _) in sorted(loop.body.dropouts.items()):
        value = _scalar(gv, loop, rate)
        if value != 0.0:
            raise Unsupported(f"While {loop.name!r}: dropout {sel} has rate "
                              f"{'unknown' if value is None else value} at inference "
                              "(feed keep_prob 1.0 or give it a default of 1.0)")


def _scalar(gv, loop, ref, depth=0):
    """A scalar computed in the body from constants and loop invariants, or None."""
    body = loop.body
    k = body.arg_index(ref)
    if k is not None:
        try:
            v = np.asarray(gv.static(loop.ins[k]))
        except Unsupported:
            return None
        return float(v.reshape(())) if v.size == 1 else None
    n = body.node(body.through(ref, masks=False))
    if n is None or depth > 8:
        return None
    if n.op == "Const":
        import tensorflow as tf

        v = tf.make_ndarray(n.attr["value"].tensor)
        return float(v.reshape(())) if v.size == 1 else None
    ops = {"Sub": np.subtract, "Add": np.add, "AddV2": np.add, "Mul": np.multiply,
           "RealDiv": np.divide}
    if n.op not in ops:
        return None
    a, b = (_scalar(gv, loop, r, depth + 1) for r in body.inputs(n))
    return None if a is None or b is None else float(ops[n.op](a, b))


def _sequence_output(gv, loop, out_arg, time_major=False):
    """The per-step outputs after the loop → (tensor, nodes to claim), or (None, []):
    transpose(TensorListStack(While:k)) or transpose(TensorArrayGatherV3(.., Exit_k)); a
    time-major loop has no transpose."""
    if out_arg is None:
        return None, []
    cur, claimed = loop.out(out_arg), []
    for _ in range(6):
        cons = [gv.nodes[c] for c, _ in gv.consumers.get(cur, [])]
        size = [n for n in cons if n.op == "TensorArraySizeV3"]   # v1: gather(range(size))
        for n in size:
            claimed.append(n.name)
            claimed += [c for c, _ in gv.consumers.get(n.name + ":0", [])
                        if gv.nodes[c].op == "Range"]
        cons = [n for n in cons if n.op != "TensorArraySizeV3"]
        if len(cons) != 1:
            return None, []
        n = cons[0]
        claimed.append(n.name)
        if n.op == "Transpose" and not time_major:
            return (n.name + ":0", claimed) if _perm_102(gv, n) else (None, [])
        if n.op in ("TensorListStack", "TensorArrayGatherV3") and time_major:
            return n.name + ":0", claimed
        if n.op not in ("Identity", "TensorListStack", "TensorArrayGatherV3"):
            return None, []
        cur = n.name + ":0"
    return None, []


def v1_loop(gv, enter, frame):
    """The control-flow-v1 frame `frame` (entered by `enter`) as a Loop whose Body has a
    loop variable per Merge(Enter, NextIteration), read as Identity(Switch:1), then an
    invariant per constant Enter."""
    nodes = _frame_nodes(gv, frame)
    where = f"TF1 control-flow loop '{scope_of(enter.name)}' (frame {frame!r})"
    nested = sorted({gv.attr(n, "frame_name", "") for n in nodes.values()
                     if n.op in ENTER} - {frame})
    if nested:
        raise Unsupported(f"{where} holds nested loops {nested[:2]}: not converted")
    args, ins, ret, outs, plumbing = [], [], [], [], set()
    for m in sorted((n for n in nodes.values() if n.op in MERGE), key=lambda n: n.name):
        init, back = [nodes.get(node_of(t)) for t in gv.inputs_of(m)[:2]]
        if init is None or back is None or init.op not in ENTER or back.op not in NEXT:
            init, back = back, init
        switch = _users_of(gv, nodes, m.name + ":0", SWITCH)
        ident = switch and _users_of(gv, nodes, switch[0].name + ":1", ("Identity",))
        exit_ = switch and _users_of(gv, {n.name: n for n in gv._node_consumers.get(
            switch[0].name, [])}, switch[0].name + ":0", EXIT)
        if init is None or back is None or init.op not in ENTER or back.op not in NEXT \
                or len(switch) != 1 or len(ident) != 1 or len(exit_) > 1:
            raise Unsupported(f"{where}: loop variable {m.name} is not Merge(Enter, "
                              "NextIteration) → Switch → Identity / Exit")
        args.append(ident[0].name)
        ins.append(gv.inputs_of(init)[0])
        ret.append(gv.inputs_of(back)[0])
        outs.append(exit_[0].name + ":0" if exit_ else None)
        plumbing.update({m.name, init.name, back.name, switch[0].name, ident[0].name})
    for e in sorted((n for n in nodes.values() if n.op in ENTER), key=lambda n: n.name):
        if e.name not in plumbing:
            if not gv.attr(e, "is_constant", False):
                raise Unsupported(f"{where}: {e.name} enters a value that is neither a "
                                  "loop variable nor constant")
            args.append(e.name)
            ins.append(gv.inputs_of(e)[0])
    cond = set()
    todo = [n.name for n in nodes.values() if n.op == "LoopCond"]
    while todo:                  # the loop condition (time < steps): not part of the body
        n = todo.pop()
        if n in cond or n not in nodes or n in args or nodes[n].op in MERGE:
            continue
        cond.add(n)
        todo += [node_of(t) for t in nodes[n].input]
    body_nodes = {k: n for k, n in nodes.items()
                  if k not in cond and k not in args and n.op not in V1_PLUMBING}
    body = Body(args, body_nodes, ret)
    return Loop(scope_of(args[0]) if args else scope_of(enter.name), body, ins,
                sorted(nodes), outs)


def _frame_nodes(gv, frame):
    """The frame's nodes the outputs need: what its Enters reach (data and control edges)
    up to its Exits (a training graph's gradient ops read the frame too: left out)."""
    cons = gv.__dict__.get("_node_consumers")
    if cons is None:
        cons = {}
        for n in gv.graph_def.node:
            for t in n.input:
                cons.setdefault(node_of(t), []).append(n)
        gv._node_consumers = cons
    todo = [n for n in gv.graph_def.node
            if n.op in ENTER and (gv.attr(n, "frame_name", "") or "") == frame]
    seen = {}
    while todo:
        n = todo.pop()
        if n.name in seen or n.name not in gv.needed:
            continue
        seen[n.name] = n
        if n.op not in EXIT:
            todo += cons.get(n.name, [])
    return seen


def _users_of(gv, nodes, tensor, ops):
    name, idx = tensor.rsplit(":", 1)
    out = []
    for n in nodes.values():
        if n.op in ops and any(node_of(t) == name and (t.split(":") + ["0"])[1] == idx
                               for t in n.input if not t.startswith("^")):
            out.append(n)
    return out
