"""Identity-like ops fold away; the TF1 dropout subgraph becomes an inference Dropout."""

import re

from tb_varmap.convert.graph import RANDOM_OPS, node_of
from tb_varmap.convert.registry import Emit, register, register_pattern

DROPOUT_SCOPE = re.compile(r"^dropout(_\d+)?$")


@register("Identity", "StopGradient", "Snapshot", "PreventGradient")
def identity(gv, node):
    x = gv.inputs_of(node)[0]
    return Emit(None, [x], [node.name + ":0"], [node.name])


@register_pattern("dropout")
def dropout(gv, node):
    """A `…/dropout/` scope holding a random op: its one output is its one live input."""
    import keras

    parts = node.name.split("/")[:-1]
    idx = [i for i, p in enumerate(parts) if DROPOUT_SCOPE.match(p)]
    if not idx:
        return None
    prefix = "/".join(parts[:idx[-1] + 1]) + "/"
    inside = [n for n in gv.order if n.startswith(prefix)]
    if not any(gv.nodes[n].op in RANDOM_OPS for n in inside):
        return None
    members = set(inside)
    outs = set()
    for t, cons in gv.consumers.items():
        if node_of(t) in members and any(c not in members for c, _ in cons):
            outs.add(t)
    outs |= {o for o in gv.outputs if node_of(o) in members}
    ins = {t for n in inside for t in gv.inputs_of(n)
           if node_of(t) not in members and gv.is_live(t)}
    if len(outs) != 1 or len(ins) != 1:
        return None
    rate = _rate(gv, inside)
    dtype = gv.dtype(gv.nodes[node_of(next(iter(outs)))])
    return Emit(lambda n: keras.layers.Dropout(rate, name=n, dtype=dtype),
                [ins.pop()], [outs.pop()], [n for n in inside if n in gv.live],
                name=prefix.rstrip("/"))


def _rate(gv, nodes):
    """Dropout rate: `random >= rate` (TF ≥ 1.13), else a `keep_prob`/`rate` constant;
    0.0 if unknown (the rate does not change inference)."""
    for n in nodes:
        node = gv.nodes[n]
        if node.op == "GreaterEqual":
            for t in gv.inputs_of(node):
                c = gv.const(t)
                if c is not None and c.size == 1 and 0 <= float(c.reshape(())) < 1:
                    return float(c.reshape(()))
    for n in nodes:
        for t in gv.inputs_of(n):
            c = gv.const(t) if not gv.is_live(t) else None
            name = node_of(t).rsplit("/", 1)[-1]
            if c is None or c.size != 1:
                continue
            v = float(c.reshape(()))
            if "keep_prob" in name and 0 < v <= 1:
                return 1.0 - v
            if name == "rate" and 0 <= v < 1:
                return v
    return 0.0
