"""Make tf.gradients work on an imported TF1 control-flow-v1 loop.

`import_graph_def` recreates the Enter/Merge/Switch/NextIteration/Exit ops but not the
Python `WhileContext` each loop had when it was built, and tf.gradients needs it. A
MetaGraph keeps it in the `while_context` collection; an event-file graph or a bare
GraphDef does not. `restore_while_contexts` rebuilds one WhileContextDef per frame from the
graph structure (pivots, enters, exits, values) and attaches it, as import_meta_graph
would. Nested loops are left alone (their gradient then fails with TF's own message).
"""

import re

LOOP_ENTER = ("Enter", "RefEnter")
LOOP_MERGE = ("Merge", "RefMerge")
LOOP_SWITCH = ("Switch", "RefSwitch")
LOOP_EXIT = ("Exit", "RefExit")


def frames(graph):
    """{frame name: [ops of the frame]}: what each frame's Enters reach up to its Exits."""
    consumers = {}
    for op in graph.get_operations():
        for t in op.inputs:
            consumers.setdefault(t.op.name, []).append(op)
        for c in op.control_inputs:
            consumers.setdefault(c.name, []).append(op)
    out = {}
    for op in graph.get_operations():
        if op.type in LOOP_ENTER:
            out.setdefault(op.get_attr("frame_name").decode(), []).append(op)
    for name, enters in out.items():
        seen, todo = {}, list(enters)
        while todo:
            op = todo.pop()
            if op.name in seen:
                continue
            seen[op.name] = op
            if op.type not in LOOP_EXIT:
                todo += consumers.get(op.name, [])
        out[name] = list(seen.values())
    return out


def with_loop_exits(graph_def, names):
    """`names` plus every Exit of the v1 loops they need: tf.gradients of a loop expects
    all of its exits in the graph, a subgraph extracted for some outputs may lack them."""
    nodes = {n.name: n for n in graph_def.node}
    exits = {}                           # frame -> its Exit nodes
    for n in graph_def.node:
        if n.op in LOOP_EXIT and not _GRADIENTS.search(n.name):  # not a training counter
            frame = _frame_of_exit(nodes, n)
            if frame is not None:
                exits.setdefault(frame, []).append(n.name)
    if not exits:
        return list(names)
    seen, todo = set(), [n.split(":")[0] for n in names]
    while todo:                          # what `names` need (data and control inputs)
        n = todo.pop()
        if n not in seen and n in nodes:
            seen.add(n)
            todo += [t.split(":")[0].lstrip("^") for t in nodes[n].input]
    used = {nodes[n].attr["frame_name"].s.decode() for n in seen
            if nodes[n].op in LOOP_ENTER}
    extra = [e for f in sorted(used & set(exits)) for e in exits[f]]
    return sorted(set(names) | set(extra))


_GRADIENTS = re.compile(r"(^|/)gradients(_\d+)?/")


def _frame_of_exit(nodes, exit_node):
    """Exit ← Switch ← Merge ← Enter (frame_name)."""
    n = exit_node
    for op in (LOOP_SWITCH, LOOP_MERGE):
        n = nodes.get(n.input[0].split(":")[0].lstrip("^")) if n.input else None
        if n is None or n.op not in op:
            return None
    for t in n.input:
        e = nodes.get(t.split(":")[0].lstrip("^"))
        if e is not None and e.op in LOOP_ENTER:
            return e.attr["frame_name"].s.decode()
    return None


def restore_while_contexts(graph):
    """Attach a WhileContext to every un-nested v1 loop of `graph` that has none; returns
    the frame names restored."""
    from tensorflow.core.protobuf import control_flow_pb2
    from tensorflow.python.ops import control_flow_ops

    restored = []
    all_frames = frames(graph)
    for name, ops in sorted(all_frames.items()):
        inner = {op.get_attr("frame_name").decode() for op in ops if op.type in LOOP_ENTER}
        if inner != {name} or any(op._control_flow_context is not None for op in ops):
            continue                      # nested, or already has its context
        cdef = _context_def(name, ops, control_flow_pb2)
        if cdef is None:
            continue
        with graph.as_default():
            control_flow_ops.WhileContext(context_def=cdef)
        restored.append(name)
    return restored


def _context_def(name, ops, pb):
    conds = [op for op in ops if op.type == "LoopCond"]
    merges = sorted((op for op in ops if op.type in LOOP_MERGE), key=lambda op: op.name)
    if len(conds) != 1 or not merges:
        return None
    # the pivot for the predicate: the first loop variable (time, for dynamic_rnn)
    first = min(merges, key=lambda m: (bool(_GRADIENTS.search(m.name)), len(m.name), m.name))
    switch = [c for c in first.outputs[0].consumers() if c.type in LOOP_SWITCH]
    body = [c for c in switch[0].outputs[1].consumers() if c.type == "Identity"] \
        if switch else []
    if not body:
        return None
    var_enters = [m.inputs[0] if m.inputs[0].op.type in LOOP_ENTER else m.inputs[1]
                  for m in merges]
    exits = [op.outputs[0].name for op in ops if op.type in LOOP_EXIT]
    external = {}
    values = set()
    for op in ops:
        values.update(t.name for t in op.outputs)
        if op.type in LOOP_ENTER and op.outputs[0] not in var_enters:
            external[op.inputs[0].name] = op.outputs[0].name
    values.update(external)
    enter = next(op for op in ops if op.type in LOOP_ENTER)
    cdef = pb.WhileContextDef(
        context_name=name, parallel_iterations=int(enter.get_attr("parallel_iterations")),
        back_prop=True, swap_memory=False, pivot_name=conds[0].outputs[0].name,
        pivot_for_pred_name=first.outputs[0].name, pivot_for_body_name=body[0].outputs[0].name,
        loop_exit_names=sorted(exits), loop_enter_names=[t.name for t in var_enters])
    cdef.values_def.values.extend(sorted(values))
    for k, v in external.items():
        cdef.values_def.external_values[k] = v
    return cdef


class legacy_gradients:
    """Context: build gradients the TF1 way (TensorArray grads as TensorArrayV3, not
    TensorLists), which a v1 loop needs; the process-wide switch is restored on exit.
    Inactive (a no-op) when `active` is false."""

    def __init__(self, active=True):
        self.active = active

    def __enter__(self):
        from tensorflow.python.ops import control_flow_util

        self._saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
        if self.active:
            control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
        return self

    def __exit__(self, *exc):
        from tensorflow.python.ops import control_flow_util

        control_flow_util.ENABLE_CONTROL_FLOW_V2 = self._saved
        return False
