"""tf.nn.static_rnn over BasicLSTMCell / LSTMCell / GRUCell, unrolled step by step in
the main graph → one keras.layers.LSTM / GRU(reset_after=False) with return_state.

Matched when: the steps read unstack(x, axis=1) in order, share one kernel (and bias),
start from zero state, each step is exactly one cell's ops (same op counts as the
dynamic_rnn body), and only the last step's h (and c) leave the chain. Weight layout as
in rnn.py (DESIGN.md gate orders, forget_bias folded).
"""

from collections import Counter
from dataclasses import replace

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.handlers.rnn import (CELL_OPS, _concat, _gru_h_new, _h_new,
                                            _is_gru_gates, _split_users, _zero_state,
                                            gru_weights, lstm_weights)
from tb_varmap.convert.registry import Emit, Unsupported, register_pattern


class _Main:
    """The main graph seen through Body's interface (refs are (node, output index))."""

    def __init__(self, gv):
        self.gv = gv

    def node(self, ref):
        return self.gv.nodes.get(ref[0])

    def users(self, ref, op=None):
        return [self.gv.nodes[c] for c, _ in self.gv.consumers.get(f"{ref[0]}:{ref[1]}", [])
                if op is None or self.gv.nodes[c].op in op]

    def inputs(self, n):
        return [(node_of(t), int(t.split(":")[1])) for t in self.gv.inputs_of(n)]


def _ref_t(ref):
    return f"{ref[0]}:{ref[1]}"


def _lstm_step(g, matmul):
    """One unrolled LSTM step at `matmul`: refs and its nodes, or None."""
    su = _split_users(g, matmul, 4)
    if su is None:
        return None
    bias_add, split = su
    x, h_prev = _concat(g, matmul, matmul)
    h_new = _h_new(g, split, matmul)
    f = (split.name, 2)
    fb, adds = 0.0, g.users(f, ("Add", "AddV2"))
    if adds:
        other = [r for r in g.inputs(adds[0]) if r != f]
        c = g.gv.const(_ref_t(other[0])) if len(other) == 1 else None
        if c is None or c.size != 1:
            return None
        fb, f = float(c.reshape(())), (adds[0].name, 0)
    c_prev = c_new = None
    for s in g.users(f, ("Sigmoid",)):
        for m in g.users((s.name, 0), ("Mul",)):
            other = [r for r in g.inputs(m) if r != (s.name, 0)]
            c_prev = other[0] if len(other) == 1 else None
            for a in g.users((m.name, 0), ("Add", "AddV2")):
                c_new = (a.name, 0)
    if c_prev is None or c_new is None:
        return None
    region = _region(g, [h_new, c_new], {x[0], h_prev[0], c_prev[0]}, "lstm")
    if region is None:
        return None
    return {"x": x, "h_prev": h_prev, "c_prev": c_prev, "h": h_new, "c": c_new, "fb": fb,
            "bias": bias_add, "nodes": region, "kind": "lstm"}


def _region(g, outs, stop, kind):
    """The step's nodes, back from its new states to x / previous states / constants;
    None unless they are exactly one `kind` cell and nothing leaves the step midway."""
    region, todo = set(), [r[0] for r in outs]
    while todo:
        n = todo.pop()
        if n in region or n in stop or not g.gv.is_live(n + ":0"):
            continue
        region.add(n)
        todo += [r[0] for r in g.inputs(g.gv.nodes[n])]
    ops = Counter("Add" if g.gv.nodes[n].op == "AddV2" else g.gv.nodes[n].op for n in region)
    if ops != CELL_OPS[kind]:
        return None
    for n in region - {r[0] for r in outs}:
        for i in g.gv.used_outputs(n):
            t = f"{n}:{i}"
            if t in g.gv.outputs or any(c not in region for c, _ in g.gv.consumers.get(t, [])):
                return None
    return region


def _gru_step(g, matmul):
    """One unrolled GRUCell step at its gates `matmul`, or None."""
    if not _is_gru_gates(g, matmul):
        return None
    x, h_prev = _concat(g, matmul, matmul)
    bias_add = g.users((matmul.name, 0), ("BiasAdd",))[0]
    sig = g.users((bias_add.name, 0), ("Sigmoid",))[0]
    split = g.users((sig.name, 0), ("Split",))[0]
    r_mul = g.users((split.name, 0), ("Mul",))
    cand = g.users((r_mul[0].name, 0), ("ConcatV2",)) if len(r_mul) == 1 else []
    c_mm = g.users((cand[0].name, 0), ("MatMul",)) if len(cand) == 1 else []
    c_add = g.users((c_mm[0].name, 0), ("BiasAdd",)) if len(c_mm) == 1 else []
    if not c_add or g.inputs(cand[0])[0] != x:
        return None
    h_new = _gru_h_new(g, split, matmul)
    region = _region(g, [h_new], {x[0], h_prev[0]}, "gru")
    if region is None:
        return None
    return {"x": x, "h_prev": h_prev, "h": h_new, "bias": bias_add, "nodes": region,
            "cand": c_mm[0], "cand_bias": c_add[0], "kind": "gru", "fb": 0.0}


def _is_zero(gv, t):
    try:
        _zero_state(gv, t, gv.nodes[node_of(t)])
        return True
    except Unsupported:
        return False


@register_pattern("static_rnn_lstm", ops=("MatMul",))
def static_rnn_lstm(gv, matmul):
    """tf.nn.static_rnn over BasicLSTMCell/LSTMCell, unrolled: x unstacked on axis 1,
    steps sharing one kernel, zero initial state, only the last step's h (and c) used
    outside → keras LSTM(return_state=True) on x."""
    return _static_rnn(gv, matmul, "lstm.kernel", _lstm_step)


@register_pattern("static_rnn_gru", ops=("MatMul",))
def static_rnn_gru(gv, matmul):
    """The same for GRUCell → keras GRU(reset_after=False, return_state=True)."""
    return _static_rnn(gv, matmul, "gru.gates_kernel", _gru_step)


def _static_rnn(gv, matmul, role, step_fn):
    import keras

    kb = gv.var(gv.inputs_of(matmul)[1])
    if kb is None or kb.role != role or matmul.attr["transpose_a"].b or \
            matmul.attr["transpose_b"].b:
        return None
    g = _Main(gv)
    first = step_fn(g, matmul)
    states = ("h_prev", "c_prev") if first and first["kind"] == "lstm" else ("h_prev",)
    if first is None or not all(_is_zero(gv, _ref_t(first[k])) for k in states):
        return None
    steps = [first]
    while True:
        nxt = []
        for c in g.users(steps[-1]["h"], ("ConcatV2",)):
            for m in g.users((c.name, 0), ("MatMul",)):
                if gv.var(gv.inputs_of(m)[1]) is kb:
                    nxt.append(m)
        if not nxt:
            break
        step = step_fn(g, nxt[0]) if len(nxt) == 1 else None
        if step is None or any(step[k] != steps[-1][k[:-5]] for k in states) or \
                step["fb"] != first["fb"]:
            return None
        steps.append(step)
    unpack = gv.nodes[steps[0]["x"][0]]
    if unpack.op != "Unpack" or gv.attr(unpack, "axis", 0) != 1 or \
            [s["x"] for s in steps] != [(unpack.name, k) for k in range(len(steps))] or \
            gv.attr(unpack, "num", 0) != len(steps):
        return None
    for s, nxt_step in zip(steps, steps[1:]):   # intermediate states feed the next step only
        for k in states:
            t = _ref_t(s[k[:-5]])
            inside = s["nodes"] | nxt_step["nodes"]        # c feeds its own tanh too
            if t in gv.outputs or any(c not in inside for c, _ in gv.consumers.get(t, [])):
                return None
    same = [("bias", lambda s: s["bias"])]
    if first["kind"] == "gru":
        same += [("cand", lambda s: s["cand"]), ("cand_bias", lambda s: s["cand_bias"])]
    binds = {}
    for key, get in same:
        b = gv.var(gv.inputs_of(get(first))[1])         # MatMul / BiasAdd input 1
        if b is None or any(gv.var(gv.inputs_of(get(s))[1]) is not b for s in steps):
            return None
        binds[key] = b
    cell = _static_weights(first, kb, binds, len(steps))
    if cell is None:
        return None
    units, weights = cell
    last = steps[-1]
    dtype = np.asarray(kb.value).dtype.name
    nodes = [n for n in gv.order if any(n in s["nodes"] for s in steps)]
    outputs = [_ref_t(last["h"]), _ref_t(last["h"])]
    if first["kind"] == "lstm":
        outputs.append(_ref_t(last["c"]))

    def make(n):
        if first["kind"] == "lstm":
            return keras.layers.LSTM(units, return_state=True, name=n, dtype=dtype)
        return keras.layers.GRU(units, reset_after=False, return_state=True, name=n,
                                dtype=dtype)

    return Emit(make, [gv.inputs_of(unpack)[0]], outputs, nodes,
                name=matmul.name.rsplit("/", 1)[0], weights=weights)


def _static_weights(first, kb, binds, n_steps):
    """(units, [Weight]) in Keras order for the unrolled cell, or None."""
    steps = f"{n_steps} unrolled steps; "
    if first["kind"] == "lstm":
        return lstm_weights(kb, binds["bias"], first["fb"], prefix=steps)
    return gru_weights(kb, binds["bias"], binds["cand"], binds["cand_bias"], prefix=steps)


# ------------------------------------------------- whole sequences (every step's h used)

def _split_in(gv, n):
    """Split's value input (old and new Split both take split_dim first)."""
    return gv.inputs_of(n)[1]


def _concat_parts(gv, n):
    """Values and axis of Concat (axis first) / ConcatV2 (axis last), axis None if not
    constant."""
    ins = gv.inputs_of(n)
    vals, axis_t = (ins[1:], ins[0]) if n.op == "Concat" else (ins[:-1], ins[-1])
    c = gv.const(axis_t)
    return vals, (int(c.reshape(())) if c is not None and c.size == 1 else None)


def _lstm_back(gv, h_t):
    """Match one LSTM step backwards from its new h, in any TF version's spelling
    (Concat/ConcatV2, Add/BiasAdd bias): dict of its pieces, or None."""
    nodes = gv.nodes
    h = nodes[node_of(h_t)]
    if h.op != "Mul":
        return None
    a, b = (nodes[node_of(t)] for t in gv.inputs_of(h))
    tanh_c, sig_o = (a, b) if a.op == "Tanh" else (b, a)
    if tanh_c.op != "Tanh" or sig_o.op != "Sigmoid":
        return None
    c_new = nodes[node_of(gv.inputs_of(tanh_c)[0])]
    o_t = gv.inputs_of(sig_o)[0]
    split = nodes[node_of(o_t)]
    if split.op != "Split" or o_t != f"{split.name}:3" or split.attr["num_split"].i != 4:
        return None
    pre = nodes[node_of(_split_in(gv, split))]
    if pre.op not in ("Add", "AddV2", "BiasAdd"):
        return None
    mm_t = [t for t in gv.inputs_of(pre) if nodes[node_of(t)].op == "MatMul"]
    if len(mm_t) != 1:
        return None
    mm = nodes[node_of(mm_t[0])]
    bias = gv.var([t for t in gv.inputs_of(pre) if t != mm_t[0]][0])
    kernel = gv.var(gv.inputs_of(mm)[1])
    cat = nodes[node_of(gv.inputs_of(mm)[0])]
    if kernel is None or bias is None or cat.op not in ("Concat", "ConcatV2") or \
            mm.attr["transpose_a"].b or mm.attr["transpose_b"].b:
        return None
    vals, axis = _concat_parts(gv, cat)
    if len(vals) != 2 or axis not in (1, -1) or c_new.op not in ("Add", "AddV2"):
        return None
    # c_new = c_prev * sigmoid(f + fb) + sigmoid(i) * tanh(j)
    c_prev, fb = None, None
    for t in gv.inputs_of(c_new):
        m = nodes[node_of(t)]
        if m.op != "Mul":
            return None
        for x, y in (gv.inputs_of(m), gv.inputs_of(m)[::-1]):
            s = nodes[node_of(y)]
            if s.op != "Sigmoid":
                continue
            f = nodes[node_of(gv.inputs_of(s)[0])]
            if f.op in ("Add", "AddV2") and f"{split.name}:2" in gv.inputs_of(f):
                other = [i for i in gv.inputs_of(f) if i != f"{split.name}:2"][0]
                k = gv.const(other)
                if k is not None and k.size == 1:
                    c_prev, fb = x, float(k.reshape(()))
    if c_prev is None:
        return None
    return {"x": vals[0], "h_prev": vals[1], "c_prev": c_prev, "c": f"{c_new.name}:0",
            "h": h_t, "kernel": kernel, "bias": bias, "fb": fb, "split": split,
            "first": cat.name}


def _step_nodes(gv, step):
    """Nodes of one step: back from h / c to x, h_prev, c_prev and the constants."""
    stop = {node_of(step[k]) for k in ("x", "h_prev", "c_prev")}
    region, todo = set(), [node_of(step["h"]), node_of(step["c"])]
    while todo:
        n = todo.pop()
        if n in region or n in stop or not gv.is_live(n + ":0"):
            continue
        region.add(n)
        todo += [node_of(t) for t in gv.inputs_of(gv.nodes[n])]
    return region


def _step_input(gv, x_t):
    """x_t = Unpack(X, axis=1):t or Squeeze(Split(X, T, axis=1):t, [1]) → (X, t, T)."""
    n = gv.nodes[node_of(x_t)]
    idx = int(x_t.split(":")[1])
    if n.op == "Unpack" and gv.attr(n, "axis", 0) == 1:
        return gv.inputs_of(n)[0], idx, gv.attr(n, "num", 0), [n.name]
    if n.op == "Squeeze" and list(gv.attr(n, "squeeze_dims", []) or []) == [1]:
        t = gv.inputs_of(n)[0]
        s = gv.nodes[node_of(t)]
        if s.op == "Split" and s.attr["num_split"].i >= 1:
            dim = gv.const(gv.inputs_of(s)[0])
            if dim is not None and int(dim.reshape(())) == 1:
                return _split_in(gv, s), int(t.split(":")[1]), s.attr["num_split"].i, \
                    [s.name, n.name]
    return None


@register_pattern("static_rnn_sequence", ops=("Concat", "ConcatV2", "Pack"))
def static_rnn_sequence(gv, node):
    """Unrolled (possibly stacked) LSTM whose every step output is gathered:
    Pack(h_0..h_T-1, axis=1) → RNN(StackedRNNCells, return_sequences, return_state: the
    last h, c of each layer may be used too), or Concat(h_0..h_T-1, axis=1) →
    Sequential([that RNN, Reshape((T*u,))]) (nothing but the sequence used). Needs the
    kernels' role lstm.kernel (inferred or tagged; tag custom.param to keep per-op)."""
    import keras

    if node.op == "Pack":
        hs, axis = gv.inputs_of(node), gv.attr(node, "axis", 0)
    else:
        hs, axis = _concat_parts(gv, node)
    if axis != 1 or len(hs) < 2 or not all(gv.is_live(h) for h in hs):
        return None
    first = _lstm_back(gv, hs[0])
    if first is None or first["kernel"].role != "lstm.kernel":    # tagged or inferred
        return None
    layers = []                          # bottom-up: [[step per t]]
    tops = hs
    while True:
        steps = [_lstm_back(gv, h) for h in tops]
        if any(s is None for s in steps):
            return None
        for a, b in zip(steps, steps[1:]):
            if b["h_prev"] != a["h"] or b["c_prev"] != a["c"] or \
                    b["kernel"] is not a["kernel"] or b["bias"] is not a["bias"] or \
                    b["fb"] != a["fb"]:
                return None
        if not (_is_zero(gv, steps[0]["h_prev"]) and _is_zero(gv, steps[0]["c_prev"])):
            return None
        layers.insert(0, steps)
        below = [_lstm_back(gv, s["x"]) for s in steps]
        if all(b is not None for b in below):
            tops = [s["x"] for s in steps]
            continue
        if any(b is not None for b in below):
            return None
        break
    ins = [_step_input(gv, s["x"]) for s in layers[0]]
    if any(i is None for i in ins) or len({i[0] for i in ins}) != 1 or \
            [i[1] for i in ins] != list(range(len(ins))) or ins[0][2] != len(ins):
        return None
    x = ins[0][0]
    nodes = set()
    for steps in layers:
        for s in steps:
            nodes |= _step_nodes(gv, s)
    flat = node.op != "Pack"
    # Pack: final states come out too (RNN return_state); Concat: only the sequence
    finals = set() if flat else {s[-1][k] for s in layers for k in ("h", "c")}
    allowed = nodes | {node.name}
    for n in nodes:                      # nothing else leaves the unrolled stack
        for i in gv.used_outputs(n):
            t = f"{n}:{i}"
            if t in finals:
                continue
            if t in gv.outputs or any(c not in allowed for c, _ in gv.consumers.get(t, [])):
                return None
    weights, cells = [], []
    for j, steps in enumerate(layers):
        s0 = steps[0]
        cell = _static_weights({"kind": "lstm", "fb": s0["fb"]}, s0["kernel"],
                               {"bias": s0["bias"]}, len(steps))
        if cell is None:
            return None
        units, ws = cell
        cells.append(units)
        weights += [replace(w, attr=3 * j + w.attr) for w in ws]
    dtype = np.asarray(first["kernel"].value).dtype.name
    steps_n = len(hs)
    outputs = [node.name + ":0"]
    if not flat:
        outputs += [s[-1][k] for s in layers for k in ("h", "c")]

    def make(n):
        rnn = keras.layers.RNN(keras.layers.StackedRNNCells(
            [keras.layers.LSTMCell(u, dtype=dtype) for u in cells]),
            return_sequences=True, return_state=not flat,
            name=f"{n}_rnn" if flat else n, dtype=dtype)
        if not flat:
            return rnn
        return keras.Sequential([rnn, keras.layers.Reshape((steps_n * cells[-1],))],
                                name=n)

    order = [n for n in gv.order if n in nodes] + [node.name]
    return Emit(make, [x], outputs, order,
                name=node_of(first["first"]).split("/")[0] + "_lstm", weights=weights)
