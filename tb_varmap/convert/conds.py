"""TF1 conditionals whose predicate is fixed at inference → the branch taken.

TF1 models switch train/inference behaviour with `is_training =
tf.placeholder_with_default(False, [])` (slim batch_norm / dropout, tf.layers with a tensor
`training`); TF 1.x wrote a `cond` on it as Switch/Merge. Keras layers compute one mode, so
when the predicate is a constant, or a scalar PlaceholderWithDefault the model is not fed
(its default, as the converter treats such switches anyway), `fold_static_conds` rewires
the graph for the converter: consumers of a fixed Switch's taken side read its data
directly, a Merge with one live input becomes an Identity of it (same name, so every tensor
the converted layers stand for still exists in the original graph, which verification
runs with TF's own cond). Control-flow-v2 `If` ops (TF 2 writing v1 code) are not folded:
inlining a branch would create tensors the original graph does not have.
"""

from tensorflow.core.framework import graph_pb2

SWITCH = ("Switch", "RefSwitch")
MERGE = ("Merge", "RefMerge")
PASS = ("Identity", "Snapshot")


def _name(t):
    return t.lstrip("^").split(":")[0]


def _port(t):
    parts = t.split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def static_bool(nodes, t, fed):
    """The fixed value of boolean tensor `t`, or None."""
    for _ in range(20):
        n = nodes.get(_name(t))
        if n is None or n.name in fed:
            return None
        if n.op in PASS:
            t = n.input[0]
        elif n.op == "PlaceholderWithDefault":
            t = n.input[0]
        elif n.op == "LogicalNot":
            v = static_bool(nodes, n.input[0], fed)
            return None if v is None else not v
        elif n.op == "Const":
            import tensorflow as tf

            v = tf.make_ndarray(n.attr["value"].tensor)
            return bool(v.reshape(())) if v.size == 1 else None
        else:
            return None
    return None


def fold_static_conds(graph_def, inputs):
    """(graph_def, notes): `graph_def` with fixed conditionals resolved (a copy; the
    argument itself when there is nothing to fold)."""
    fed = {_name(i) for i in inputs}
    nodes = {n.name: n for n in graph_def.node}
    switches = {n.name: static_bool(nodes, n.input[1], fed)
                for n in graph_def.node if n.op in SWITCH}
    switches = {k: v for k, v in switches.items() if v is not None}
    if not switches:
        return graph_def, []
    gd = graph_pb2.GraphDef()
    gd.CopyFrom(graph_def)
    return gd, _fold_v1(gd, switches)


def _fold_v1(gd, switches):
    nodes = {n.name: n for n in gd.node}
    dead = {(s, 0 if taken else 1) for s, taken in switches.items()}   # dead tensors
    dead_nodes = set()
    changed = True
    while changed:                       # deadness spreads along data edges (monotone)
        changed = False
        for n in gd.node:
            if n.name in dead_nodes or n.op in SWITCH and n.name in switches:
                continue
            ins = [t for t in n.input if not t.startswith("^")]
            state = [(_name(t), _port(t)) in dead or _name(t) in dead_nodes for t in ins]
            if ins and (all(state) if n.op in MERGE else any(state)):
                dead_nodes.add(n.name)
                changed = True
    for n in gd.node:                    # read the taken side of a fixed Switch directly
        for i, t in enumerate(n.input):
            name = _name(t)
            if name in switches and not t.startswith("^") and \
                    _port(t) == (1 if switches[name] else 0):
                n.input[i] = nodes[name].input[0]
    merges = 0
    used_index = {_name(t) for n in gd.node for t in n.input if _port(t) == 1 and
                  nodes.get(_name(t)) is not None and nodes[_name(t)].op in MERGE}
    for n in gd.node:                    # a Merge with one live input is that input
        if n.op not in MERGE or n.name in dead_nodes or n.name in used_index:
            continue
        ins = [t for t in n.input if not t.startswith("^")]
        live = [t for t in ins if (_name(t), _port(t)) not in dead and _name(t) not in dead_nodes]
        if len(live) == 1 and len(ins) > 1:
            n.op = "Identity"
            del n.input[:]
            n.input.append(live[0])
            if "N" in n.attr:
                del n.attr["N"]
            merges += 1
    return [f"{len(switches)} Switch(es) with a fixed predicate: the taken branch is "
            f"converted ({merges} Merge(s) resolved)"]
