"""TF1 conditionals whose predicate is fixed at inference → the branch taken.

TF1 models switch train/inference behaviour with `is_training =
tf.placeholder_with_default(False, [])` (slim batch_norm / dropout, tf.layers with a tensor
`training`); TF 1.x wrote a `cond` on it as Switch/Merge. Keras layers compute one mode, so
when the predicate is a constant, or a scalar PlaceholderWithDefault the model is not fed
(its default, as the converter treats such switches anyway), `fold_static_conds` rewires
the graph for the converter: consumers of a fixed Switch's taken side read its data
directly, a Merge with one live input becomes an Identity of it (same name); a
control-flow-v2 `If` / `StatelessIf` (TF 2 running v1 code) has its taken branch function
inlined as `<if>/then|else/...` nodes, which its consumers read instead. Verification runs
the same resolved graph (so the layers inside a branch, and gradients through variables a
branch captured, are compared) and then checks that the original graph, TF's own cond
included, gives exactly the same outputs on the same feed.
"""

from tensorflow.core.framework import graph_pb2

SWITCH = ("Switch", "RefSwitch")
MERGE = ("Merge", "RefMerge")
PASS = ("Identity", "Snapshot")
IF = ("If", "StatelessIf")


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
    ifs = _fixed_ifs(graph_def, nodes, fed)
    if not switches and not ifs:
        return graph_def, []
    gd = graph_pb2.GraphDef()
    gd.CopyFrom(graph_def)
    notes = _fold_v1(gd, switches) if switches else []
    return gd, notes + _inline_ifs(gd, ifs)


def _fixed_ifs(gd, nodes, fed):
    ifs = {n.name: static_bool(nodes, n.input[0], fed) for n in gd.node if n.op in IF}
    return {k: v for k, v in ifs.items() if v is not None}


def _inline_ifs(gd, ifs):
    """Copy each fixed If's taken branch into `gd` and make its consumers read the copy
    (the If itself stays, unread). Returns notes."""
    from tensorflow.python.framework import function_def_to_graph

    funcs = {f.signature.name: f for f in gd.library.function}
    by_name = {n.name: n for n in gd.node}
    notes, rets_of = [], {}
    for name, taken in sorted(ifs.items()):
        node = by_name[name]
        side = "then" if taken else "else"
        fdef = funcs.get(node.attr[side + "_branch"].func.name)
        if fdef is None:
            continue
        body, nested = function_def_to_graph.function_def_to_graph_def(fdef)
        args = [a.name for a in fdef.signature.input_arg]
        arg_of = dict(zip(args, [t for t in node.input if not t.startswith("^")][1:]))
        prefix = f"{name}/{side}/"

        def outer(t, arg_of=arg_of, prefix=prefix):
            base = _name(t)
            if base in arg_of:
                return None if t.startswith("^") else arg_of[base]
            return ("^" if t.startswith("^") else "") + prefix + t.lstrip("^")

        for bn in body.node:
            if bn.name in arg_of:
                continue
            new = gd.node.add()
            new.CopyFrom(bn)
            new.name = prefix + bn.name
            del new.input[:]
            new.input.extend(x for x in (outer(t) for t in bn.input) if x is not None)
        rets = []
        for a in fdef.signature.output_arg:
            ret = fdef.ret[a.name]
            rets.append(outer(nested.get(ret, ret if ":" in ret else ret + ":0")))
        rets_of[name] = rets
        notes.append(f"{node.op} {name!r}: predicate fixed to {taken}; its {side} branch "
                     f"{fdef.signature.name!r} is converted")
    for n in gd.node:
        for i, t in enumerate(n.input):
            if _name(t) in rets_of and not t.startswith("^"):
                n.input[i] = rets_of[_name(t)][_port(t)]
    return notes


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
