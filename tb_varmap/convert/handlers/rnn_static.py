"""tf.nn.static_rnn over BasicLSTMCell / LSTMCell / GRUCell, unrolled step by step in
the main graph → one keras.layers.LSTM / GRU(reset_after=False) with return_state.

Matched when: the steps read unstack(x, axis=1) in order, share one kernel (and bias),
start from zero state, each step is exactly one cell's ops (same op counts as the
dynamic_rnn body), and only the last step's h (and c) leave the chain. Weight layout as
in rnn.py (DESIGN.md gate orders, forget_bias folded).
"""

from collections import Counter

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.handlers.rnn import (CELL_OPS, _concat, _gru_h_new, _h_new,
                                            _is_gru_gates, _split_users, _zero_state)
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register_pattern


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
    for s in steps[:-1]:                 # intermediate states feed the next step only
        if any(_ref_t(s[k[:-5]]) in gv.outputs for k in states):
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
    w = np.asarray(kb.value)
    steps = f"{n_steps} unrolled steps; "
    if first["kind"] == "lstm":
        b = np.asarray(binds["bias"].value)
        u = w.shape[1] // 4
        n_in = w.shape[0] - u
        if b.shape != (4 * u,) or n_in <= 0 or w.shape[1] != 4 * u:
            return None

        def gates(m):
            return np.ascontiguousarray(np.concatenate(
                [m[..., :u], m[..., 2 * u:3 * u], m[..., u:2 * u], m[..., 3 * u:]],
                axis=-1))

        bias = gates(b)
        bias[u:2 * u] += np.asarray(first["fb"], dtype=bias.dtype)
        note = steps + "gates i, j, f, o reordered to Keras i, f, c, o"
        return u, [Weight(0, gates(w[:n_in]), kb, note=note + "; rows [:in]"),
                   Weight(1, gates(w[n_in:]), kb, note=note + "; rows [in:]"),
                   Weight(2, bias, binds["bias"],
                          note=note + f"; forget_bias {first['fb']:g} added")]
    c = np.asarray(binds["cand"].value)
    bg, bc = np.asarray(binds["bias"].value), np.asarray(binds["cand_bias"].value)
    u = c.shape[1]
    n_in = c.shape[0] - u
    if w.shape != (n_in + u, 2 * u) or bg.shape != (2 * u,) or bc.shape != (u,):
        return None

    def zrh(rows):
        return np.ascontiguousarray(np.concatenate([w[rows, u:], w[rows, :u], c[rows]], 1))

    kernel, rec = zrh(slice(0, n_in)), zrh(slice(n_in, None))
    bias = np.ascontiguousarray(np.concatenate([bg[u:], bg[:u], bc]))
    gk = steps + "gates kernel (r, u) and candidate kernel joined as Keras z, r, h"
    gb = steps + "gates bias (r, u) + candidate bias as z, r, h"
    return u, [Weight(0, kernel, kb, note=gk), Weight(0, kernel, binds["cand"], note=gk),
               Weight(1, rec, kb, note=gk), Weight(1, rec, binds["cand"], note=gk),
               Weight(2, bias, binds["bias"], note=gb),
               Weight(2, bias, binds["cand_bias"], note=gb)]
