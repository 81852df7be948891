"""Pieces of TF1 BERT-style attention blocks that need more than one op:
GELU written out with Erf (exact) → keras.layers.Activation("gelu"), or with Tanh
(BERT's approximation) → tb_varmap Gelu(approximate=True).

q/k/v Dense, Softmax, reshape/transpose map through their own handlers; x @ x
(BatchMatMulV2 of two live tensors) stays a generic VarMapOp.

A GELU match is checked, not assumed: the claimed ops must form an elementwise function
of one tensor x (scalar constants only), and TF evaluates it on sample values, which must
equal gelu(x) of the chosen form.
"""

import math

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.registry import Emit, register_pattern

ELEMENTWISE = {"Mul", "RealDiv", "Add", "AddV2", "Sub", "Pow", "Tanh", "Erf", "Square"}
SAMPLES = np.linspace(-6.0, 6.0, 241)


def _gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _scalar_const(gv, t):
    if gv.is_live(t):
        return False
    c = gv.const(t)
    return c is not None and c.size == 1


def _ancestors(gv, out, x):
    """Region between x and `out` (inclusive of out), or None if anything but x and
    scalar constants enters it."""
    region, todo = set(), [node_of(out)]
    while todo:
        n = todo.pop()
        if n in region:
            continue
        node = gv.nodes[n]
        if node.op not in ELEMENTWISE or len(region) > 16:
            return None
        region.add(n)
        for t in gv.inputs_of(node):
            if t == x or _scalar_const(gv, t):
                continue
            if not gv.is_live(t):
                return None
            todo.append(node_of(t))
    return region


def _candidates(gv, start, hops=3):
    """Nodes downstream of `start` within `hops` consumer steps, nearest first."""
    out, frontier = [], [start.name]
    for _ in range(hops):
        nxt = []
        for n in frontier:
            for c, _ in gv.consumers.get(n + ":0", []):
                if gv.nodes[c].op in ELEMENTWISE and c not in out:
                    out.append(c)
                    nxt.append(c)
        frontier = nxt
    return out


def _x_of(gv, start, approximate):
    """The tensor GELU is applied to: Erf(x / c) or Erf(x * c); Tanh(... Pow(x, 3) ...)."""
    if not approximate:
        (t,) = gv.inputs_of(start)
        n = gv.nodes[node_of(t)]
        if n.op in ("RealDiv", "Mul"):
            live = [i for i in gv.inputs_of(n) if gv.is_live(i)]
            return live[0] if len(live) == 1 else None
        return None
    todo, seen = [start.name], set()
    for _ in range(8):
        if not todo:
            break
        n = gv.nodes[todo.pop()]
        seen.add(n.name)
        if n.op == "Pow":
            base, exp = gv.inputs_of(n)
            c = gv.const(exp)
            return base if c is not None and float(c.reshape(())) == 3.0 else None
        for t in gv.inputs_of(n):
            if gv.is_live(t) and node_of(t) not in seen and \
                    gv.nodes[node_of(t)].op in ELEMENTWISE:
                todo.append(node_of(t))
    return None


def _closed(gv, region, out):
    """Every op inside the region (but its output) feeds only the region."""
    for n in region - {node_of(out)}:
        for i in gv.used_outputs(n):
            t = f"{n}:{i}"
            if t in gv.outputs or any(c not in region for c, _ in gv.consumers.get(t, [])):
                return False
    return True


def _equals_gelu(gv, x, out, approximate):
    import tensorflow as tf

    g = gv.tf_graph()
    shape = gv.shape(x)
    if g is None or not shape or any(d is None for d in shape[1:]):
        return False
    width = int(np.prod(shape[1:])) or 1
    rows = -(-SAMPLES.size // width)
    xs = np.resize(SAMPLES, rows * width).reshape([rows] + list(shape[1:]))
    dtype = g.get_tensor_by_name("g/" + x).dtype.as_numpy_dtype
    try:
        with tf.compat.v1.Session(graph=g) as sess:
            got = sess.run("g/" + out, {"g/" + x: xs.astype(dtype)})
    except Exception:  # noqa: BLE001
        return False
    want = _gelu(xs.astype(np.float64), approximate)
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-5)


def _gelu_emit(gv, start, approximate):
    import keras

    x = _x_of(gv, start, approximate)
    if x is None:
        return None
    for cand in _candidates(gv, start):
        out = cand + ":0"
        region = _ancestors(gv, out, x)
        if region is None or start.name not in region or not _closed(gv, region, out):
            continue
        if not _equals_gelu(gv, x, out, approximate):
            continue
        nodes = [n for n in gv.order if n in region]

        def make(n):
            if approximate:
                from tb_varmap.convert.family_layers import Gelu
                return Gelu(approximate=True, name=n)
            return keras.layers.Activation("gelu", name=n)

        return Emit(make, [x], [out], nodes, name=f"{node_of(out).rsplit('/', 1)[0]}/gelu",
                    standard=not approximate)
    return None


@register_pattern("gelu_erf", ops=("Erf",))
def gelu_erf(gv, node):
    return _gelu_emit(gv, node, approximate=False)


@register_pattern("gelu_tanh", ops=("Tanh",))
def gelu_tanh(gv, node):
    return _gelu_emit(gv, node, approximate=True)
