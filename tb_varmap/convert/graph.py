"""Read-only view of a GraphDef for handlers: inputs, liveness, consumers, constants,
variable reads, static shapes and values."""

import numpy as np

from tb_varmap.convert.attrs import encode_attr
from tb_varmap.convert.registry import Unsupported
from tb_varmap.errors import BadInput

RANDOM_OPS = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal",
              "TruncatedNormal", "RandomShuffle", "Multinomial",
              "StatelessRandomUniformV2", "StatelessRandomUniform"}
VAR_OPS = {"VariableV2", "Variable", "VarHandleOp"}
PASS_OPS = {"Identity", "Snapshot"}       # value-preserving, followed to find a variable


def tensor_name(t):
    t = t.strip()
    if t.startswith("^"):
        raise BadInput(f"{t!r} is a control input, expected a tensor name")
    return t if ":" in t else t + ":0"


def node_of(t):
    return t.lstrip("^").split(":")[0]


def scope_of(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


class GraphView:
    def __init__(self, graph_def, inputs, outputs, variables):
        self.graph_def = graph_def
        self.nodes = {n.name: n for n in graph_def.node}
        self.input_nodes = []
        for i in inputs:
            n = node_of(tensor_name(i))
            if n not in self.nodes:
                raise BadInput(f"input {i!r} is not a node of the graph "
                               "(expected a placeholder name)")
            self.input_nodes.append(n)
        self.warnings = []
        for n in list(self.input_nodes):
            node = self.nodes[n]
            if node.op == "PlaceholderWithDefault" and self.attr(node, "shape") == []:
                # keep_prob / is_training switches: they take their default (inference)
                self.input_nodes.remove(n)
                self.warnings.append(f"input {n!r} is a scalar PlaceholderWithDefault; "
                                     "its default value is used")
        self.outputs = [tensor_name(o) for o in outputs]
        for o in self.outputs:
            if node_of(o) not in self.nodes:
                raise BadInput(f"output {o!r} is not a tensor of the graph")
        if not self.outputs:
            raise BadInput("no outputs given (expected tensor names like 'probs:0')")
        self.var_by_tensor = {}
        self.notes = {}                 # binding name -> note for the report
        for b in variables:
            for t in b.read_tensors:
                self.var_by_tensor[tensor_name(t)] = b
        for b in variables:
            self._split_partitions(b)
        self._tfg = None
        self.claimed = set()
        self._used = None
        self._sess = None
        self._order_needed()

    # --- structure -------------------------------------------------------------------
    def inputs_of(self, node):
        if isinstance(node, str):
            node = self.nodes[node]
        return [tensor_name(i) for i in node.input if not i.startswith("^")]

    def _order_needed(self):
        """Topological order of the nodes the outputs need (data edges), liveness
        (depends on an input), consumers."""
        stop = set(self.input_nodes)
        order, state = [], {}
        for root in [node_of(o) for o in self.outputs]:
            stack = [(root, False)]
            while stack:
                n, done = stack.pop()
                if done:
                    if state.get(n) != 2:
                        state[n] = 2
                        order.append(n)
                    continue
                if state.get(n):
                    continue       # visited, or on the stack (a loop back edge)
                state[n] = 1
                stack.append((n, True))
                if n in stop:
                    continue
                for t in reversed(self.inputs_of(n)):
                    p = node_of(t)
                    if p not in self.nodes:
                        raise BadInput(f"node {n!r} reads {t!r}, which is not in the graph")
                    if not state.get(p):
                        stack.append((p, False))
        self.order = order
        self.needed = set(order)
        self.live = set()
        for n in order:
            if n in stop or any(node_of(t) in self.live for t in self.inputs_of(n)):
                self.live.add(n)
        self.consumers = {}
        for n in order:
            if n in stop:
                continue
            for idx, t in enumerate(self.inputs_of(n)):
                self.consumers.setdefault(t, []).append((n, idx))
        for o in self.outputs:
            if node_of(o) not in self.live:
                raise BadInput(f"output {o!r} does not depend on the inputs "
                               f"{self.input_nodes} (expected a tensor computed from them)")

    # --- partitioned variables --------------------------------------------------------
    def _var_node(self, t):
        node = self.nodes.get(node_of(t))
        for _ in range(10):
            if node is None or node.op in VAR_OPS:
                return node
            ins = self.inputs_of(node)
            if node.op not in PASS_OPS | {"ReadVariableOp"} or not ins:
                return None
            node = self.nodes.get(node_of(ins[0]))
        return None

    def _split_partitions(self, b):
        """A binding read through several partition variables: give each read its own
        slice (a binding named <name>/part_k) as stored in the checkpoint."""
        import re

        parts = {}
        for t in b.read_tensors:
            vn = self._var_node(tensor_name(t))
            if vn is not None:
                parts.setdefault(vn.name, []).append(tensor_name(t))
        if len(parts) < 2:
            return
        names = sorted(parts, key=lambda n: int((re.findall(r"part_(\d+)", n) or ["0"])[-1]))
        sizes = [self.attr(self.nodes[n], "shape", [None])[0] for n in names]
        full = np.asarray(b.value)
        if None in sizes or sum(sizes) != full.shape[0]:
            for n in names:
                for t in parts[n]:
                    self.var_by_tensor.pop(t, None)
            self.warnings.append(f"variable {b.name!r}: partition sizes {sizes} do not "
                                 f"add up to its value's {list(full.shape)}; not bound")
            return
        mod = self._mod_lookup([t for n in names for t in parts[n]])
        offsets = np.cumsum([0] + sizes[:-1])
        from dataclasses import replace

        for k, n in enumerate(names):
            value = full[k::len(names)] if mod else full[offsets[k]:offsets[k] + sizes[k]]
            part = replace(b, name=f"{b.name}/part_{k}", value=np.ascontiguousarray(value))
            self.notes[part.name] = (f"partition {k} of {len(names)} of {b.name!r}"
                                     f"{' (mod lookup)' if mod else ''}")
            for t in parts[n]:
                self.var_by_tensor[t] = part

    def _mod_lookup(self, reads):
        """True when the reads feed gathers whose ids are split by id % P."""
        order = set()
        for t in reads:
            for c in self._all_consumers(t):
                if c.op in ("GatherV2", "Gather", "ResourceGather"):
                    ids = self.nodes.get(node_of(self.inputs_of(c)[1]))
                    if ids is not None and ids.op == "DynamicPartition":
                        p = self.nodes.get(node_of(self.inputs_of(ids)[1]))
                        while p is not None and p.op in PASS_OPS | {"Cast"}:
                            p = self.nodes.get(node_of(self.inputs_of(p)[0]))
                        order.add(p is not None and p.op == "FloorMod")
        return order == {True}

    def _all_consumers(self, t):
        if not hasattr(self, "_cons_all"):
            self._cons_all = {}
            for n in self.graph_def.node:
                for i in n.input:
                    if not i.startswith("^"):
                        self._cons_all.setdefault(tensor_name(i), []).append(n)
        return self._cons_all.get(t, [])

    def is_live(self, t):
        return node_of(t) in self.live

    def op(self, t):
        return self.nodes[node_of(t)].op

    def attr(self, node, key, default=None):
        if key not in node.attr:
            return default
        return encode_attr(node.name, key, node.attr[key])[1]

    def dtype(self, node):
        for key in ("T", "dtype", "DstT"):
            if key in node.attr:
                return self.attr(node, key)
        return "float32"

    def used_outputs(self, name):
        """Output indices of `name` read by needed nodes or named as model outputs."""
        if self._used is None:
            self._used = {}
            for t in list(self.consumers) + self.outputs:
                self._used.setdefault(node_of(t), set()).add(int(t.split(":")[1]))
        return sorted(self._used.get(name, ())) or [0]

    # --- variables and constants ----------------------------------------------------
    def var(self, t):
        """The VariableBinding whose value `t` carries (through Identity chains)."""
        seen = 0
        while seen < 50:
            if t in self.var_by_tensor:
                return self.var_by_tensor[t]
            node = self.nodes.get(node_of(t))
            if node is None:
                return None
            if node.op in PASS_OPS or node.op == "ReadVariableOp" or (
                    node.op == "Cast" and self.attr(node, "SrcT") == self.attr(node, "DstT")):
                t = self.inputs_of(node)[0]
                seen += 1
                continue
            return None
        return None

    def const(self, t):
        """Value of a Const (through Identity chains), else None."""
        node = self.nodes[node_of(t)]
        while node.op in PASS_OPS:
            node = self.nodes[node_of(self.inputs_of(node)[0])]
        if node.op != "Const":
            return None
        import tensorflow as tf
        return tf.make_ndarray(node.attr["value"].tensor)

    def static(self, t):
        """Value of a tensor that does not depend on the inputs: a variable, a constant,
        a placeholder default, or evaluated with TF (variables fed from the bindings)."""
        if self.is_live(t):
            raise Unsupported(f"tensor {t!r} depends on the inputs, expected a constant")
        b = self.var(t)
        if b is not None:
            return np.asarray(b.value)
        c = self.const(t)
        if c is not None:
            return c
        node = self.nodes[node_of(t)]
        if node.op == "PlaceholderWithDefault":
            return self.static(self.inputs_of(node)[0])
        if node.op in ("Placeholder", "PlaceholderV2"):
            raise Unsupported(f"{t!r} is a placeholder that is not among the inputs "
                              f"{self.input_nodes}")
        if node.op in RANDOM_OPS:
            raise Unsupported(f"{t!r} is random ({node.op})")
        return self._eval(t)

    # --- TF-side shapes and evaluation ---------------------------------------------
    def tf_graph(self):
        if self._tfg is None:
            self._tfg = False
            import tensorflow as tf
            for use_map in (True, False):
                g = tf.Graph()
                try:
                    with g.as_default():
                        imap = {}
                        if use_map:
                            with tf.name_scope("tb_varmap_values"):
                                for t, b in self.var_by_tensor.items():
                                    node = self.nodes.get(node_of(t))
                                    # values replace reads; handles and refs stay
                                    if node is not None and node.op not in VAR_OPS:
                                        imap[t] = tf.constant(b.value)
                        tf.graph_util.import_graph_def(self.graph_def, input_map=imap,
                                                       name="g")
                    self._tfg = g
                    break
                except Exception:  # noqa: BLE001  (old/odd graphs: no shapes, no eval)
                    continue
        return self._tfg or None

    def shape(self, t):
        """Static shape of `t` as a list (None = unknown dim), or None if unknown rank."""
        g = self.tf_graph()
        if g is not None:
            try:
                shape = g.get_tensor_by_name("g/" + t).shape
                return None if shape.rank is None else shape.as_list()
            except Exception:  # noqa: BLE001
                pass
        node = self.nodes[node_of(t)]
        shapes = self.attr(node, "_output_shapes")
        idx = int(t.split(":")[1])
        if shapes and idx < len(shapes):
            return shapes[idx]
        if node.op in ("Placeholder", "PlaceholderV2"):
            return self.attr(node, "shape")
        return None

    def _eval(self, t):
        g = self.tf_graph()
        if g is None:
            raise Unsupported(f"cannot evaluate {t!r}: the graph does not import into "
                              "TensorFlow")
        folded = self._variables_behind(t)
        if folded:
            self.warnings.append(f"{t}: computed from variables {folded}; folded into a "
                                 "constant (not trainable)")
        import tensorflow as tf
        try:
            if self._sess is None:
                self._sess = tf.compat.v1.Session(graph=g)
            return np.asarray(self._sess.run("g/" + t))
        except Exception as e:  # noqa: BLE001
            raise Unsupported(f"cannot evaluate {t!r} from constants and variables: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")

    def _variables_behind(self, t):
        names, seen, stack = set(), set(), [t]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            b = self.var_by_tensor.get(cur)
            if b is not None:
                names.add(b.name)
                continue
            node = self.nodes.get(node_of(cur))
            if node is not None:
                stack.extend(self.inputs_of(node))
        return sorted(names)

    def close(self):
        if self._sess is not None:
            self._sess.close()
            self._sess = None

    def partial(self, t, depth=0):
        """Best-effort value of a small int tensor (shapes): list/int with None where it
        depends on the batch size or other runtime values; None if unknown."""
        if depth > 20:
            return None
        node = self.nodes[node_of(t)]
        op = node.op
        ins = self.inputs_of(node)
        if not self.is_live(t):
            try:
                return self.static(t).tolist()
            except Unsupported:
                return None
        if op in PASS_OPS or op == "Cast":
            return self.partial(ins[0], depth + 1)
        if op == "Shape":
            return self.shape(ins[0])
        if op == "Pack":
            vals = [self.partial(i, depth + 1) for i in ins]
            return None if any(isinstance(v, list) for v in vals) else vals
        if op == "ConcatV2":
            parts = [self.partial(i, depth + 1) for i in ins[:-1]]
            if any(p is None or not isinstance(p, list) for p in parts):
                return None
            return [x for p in parts for x in p]
        if op == "StridedSlice":
            base = self.partial(ins[0], depth + 1)
            try:
                b, e, s = (self.static(i).tolist() for i in ins[1:4])
            except Unsupported:
                return None
            if not isinstance(base, list) or len(b) != 1 or s != [1]:
                return None
            if self.attr(node, "ellipsis_mask", 0) or self.attr(node, "new_axis_mask", 0):
                return None
            if self.attr(node, "shrink_axis_mask", 0) & 1:
                return base[b[0]] if -len(base) <= b[0] < len(base) else None
            lo = None if self.attr(node, "begin_mask", 0) & 1 else b[0]
            hi = None if self.attr(node, "end_mask", 0) & 1 else e[0]
            return base[lo:hi]
        return None
