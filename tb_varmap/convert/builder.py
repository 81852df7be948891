"""Graph walk: plan an Emit per live node (patterns → op handler → generic fallback),
prune to what the outputs need, then build the Keras functional model and fill weights."""

import json
import re

import numpy as np

from tb_varmap.convert.bindings import Conversion, LayerBinding
from tb_varmap.convert.graph import GraphView
from tb_varmap.convert.registry import HANDLERS, Emit, load_handlers, patterns_for
from tb_varmap.errors import BadInput

MOVING_ATTRS = ("moving_mean", "moving_variance")


def convert_graph(graph_def, inputs, outputs, variables, *, name="varmap_model",
                  progress=None):
    """TF GraphDef (bytes or proto) + VariableBindings -> Conversion (see ARCHITECTURE)."""
    load_handlers()
    report_progress = _progress(progress)
    report_progress(0.0, "reading graph")
    from tb_varmap.convert.conds import fold_static_conds

    graph, folded = fold_static_conds(_parse(graph_def), inputs)
    gv = GraphView(graph, inputs, outputs, variables)
    gv.warnings += folded
    try:
        emits = plan(gv, report_progress)
        return Builder(gv, variables, name, report_progress).build(emits)
    finally:
        gv.close()


def _parse(graph_def):
    if isinstance(graph_def, (bytes, bytearray)):
        from tensorflow.core.framework import graph_pb2
        gd = graph_pb2.GraphDef()
        try:
            gd.ParseFromString(bytes(graph_def))
        except Exception as e:  # noqa: BLE001
            raise BadInput(f"graph_def bytes do not parse as a GraphDef: {e}")
        return gd
    if hasattr(graph_def, "node"):
        if type(graph_def).__module__.startswith("tensorflow.core"):
            return graph_def
        from tensorflow.core.framework import graph_pb2   # e.g. tensorboard's copy
        gd = graph_pb2.GraphDef()
        gd.ParseFromString(graph_def.SerializeToString())
        return gd
    raise BadInput(f"graph_def must be GraphDef bytes or proto, got {type(graph_def).__name__}")


def _progress(progress):
    def call(fraction, message):
        if progress is not None:
            progress(float(fraction), message)
    return call


def plan(gv, report_progress):
    """One Emit per live node in topological order (claimed nodes are skipped)."""
    from tb_varmap.convert.handlers.generic import op_emit

    emits, claimed = [], set()
    gv.claimed = claimed
    todo = [n for n in gv.order if n in gv.live and n not in gv.input_nodes]
    for i, n in enumerate(todo):
        if i % 50 == 0:
            report_progress(0.05 + 0.35 * i / max(1, len(todo)), f"mapping {n}")
        if n in claimed:
            continue
        node = gv.nodes[n]
        emit, reasons = None, []
        candidates = patterns_for(node.op)
        if node.op in HANDLERS:
            candidates.append(HANDLERS[node.op])
        for h in candidates:
            try:
                emit = h.fn(gv, node)
            except Exception as e:  # noqa: BLE001  (any handler error → fallback)
                reasons.append(f"{h.family}.{h.fn.__name__}: {_msg(e)}")
                emit = None
            if emit is not None:
                break
        if emit is None:
            reason = "; ".join(reasons) or f"no handler for op {node.op}"
            emit = _fallback(gv, node, reason, op_emit)
        if n not in emit.nodes:
            emit.nodes.insert(0, n)
        claimed.update(emit.nodes)
        emits.append(emit)
    return emits


def _fallback(gv, node, reason, op_emit):
    try:
        return op_emit(gv, node, fallback=True, reason=reason)
    except Exception as e:  # noqa: BLE001
        live = [t for t in gv.inputs_of(node) if gv.is_live(t)]     # kept for pruning
        return Emit(None, live, [f"{node.name}:{i}" for i in gv.used_outputs(node.name)],
                    [node.name], fallback=True, reason=reason,
                    error=f"{reason}; generic layer impossible: {_msg(e)}")


def _msg(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def sanitize(name):
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("_") or "layer"


class Builder:
    def __init__(self, gv, variables, name, report_progress):
        self.gv = gv
        self.variables = variables
        self.name = name
        self.progress = report_progress
        self.kt = {}                 # TF tensor -> Keras tensor
        self.names = set()
        self.bindings = []           # LayerBinding
        self.owner = {}              # variable name -> Keras layer holding it
        self.layer_key = {}          # id(layer) -> sharing key
        self.layer_weights = {}      # layer name -> (standard, [weights])
        self.unsupported = []
        self.shared = []
        self.warnings = []
        self.used_vars = set()
        self.index_maps = {}         # weight path -> {variable: index map}

    def unique(self, hint):
        base = sanitize(hint)
        name, k = base, 1
        while name in self.names:
            name = f"{base}_{k}"
            k += 1
        self.names.add(name)
        return name

    def build(self, emits):
        import keras

        gv = self.gv
        inputs = []
        for p in gv.input_nodes:
            inputs.append(self._input(gv.nodes[p]))
        self.by_output = {t: e for e in emits for t in e.outputs}
        self.done = set()
        needed = _prune(emits, gv.outputs)
        for i, emit in enumerate(needed):
            if i % 25 == 0:
                self.progress(0.4 + 0.5 * i / max(1, len(needed)), "building layers")
            self._emit(emit)
        missing = [o for o in gv.outputs if o not in self.kt]
        if missing:
            problems = [f"{u['node']} ({u['op']}): {u['reason']}" for u in self.unsupported]
            shown = sorted(dict.fromkeys(problems), key=_cause_first)[:10]
            more = len(problems) - len(shown)
            raise BadInput(f"cannot build outputs {missing}: " + "; ".join(shown)
                           + (f" (and {more} more)" if more > 0 else ""), problems)
        self.progress(0.92, "assembling model")
        model = keras.Model(inputs=inputs, outputs=[self.kt[o] for o in gv.outputs],
                            name=self.name)
        report = self._report(inputs)
        report["weight_paths"] = [w.path for w in model.weights]   # to re-find them after a
        #                                                            reload renames nested ones
        self.progress(1.0, "converted")
        return Conversion(model=model, layers=self.bindings, report=report,
                          index_maps=self.index_maps)

    def _input(self, node):
        import keras

        # usually a Placeholder; any node works (its output 0 is fed, what feeds it is cut)
        shape = self.gv.shape(node.name + ":0")
        if shape is None or len(shape) == 0:
            raise BadInput(f"input {node.name!r} has shape {shape}: expected a known rank "
                           "with a leading batch dimension")
        dtype = self.gv.attr(node, "dtype") or self.gv.dtype(node)
        inp = keras.Input(shape=tuple(shape[1:]), dtype=dtype, name=self.unique(node.name))
        self.kt[node.name + ":0"] = inp
        self.input_info = getattr(self, "input_info", [])
        self.input_info.append({"tf": node.name, "keras": inp.name if hasattr(inp, "name")
                                else node.name, "shape": shape, "dtype": dtype})
        return inp

    def _emit(self, emit):
        from tb_varmap.convert.handlers.generic import op_emit

        gv = self.gv
        if id(emit) in self.done:
            return
        self.done.add(id(emit))
        for t in emit.inputs:     # a fallback may read what the planned layers folded
            if t not in self.kt and t in self.by_output:
                self._emit(self.by_output[t])
        if emit.error:
            for n in emit.nodes:
                self._unsupported(n, emit.error)
            return
        missing = [t for t in emit.inputs if t not in self.kt]
        if missing:
            for n in emit.nodes:
                self._unsupported(n, f"input {missing[0]!r} is unavailable (its producer "
                                     "failed)")
            return
        if emit.make is None:
            self.kt[emit.outputs[0]] = self.kt[emit.inputs[0]]
            return
        try:
            self._apply(emit)
        except Exception as e:  # noqa: BLE001
            if emit.fallback:
                for n in emit.nodes:
                    self._unsupported(n, f"{emit.reason}; generic layer failed: {_msg(e)}")
                return
            shown = emit.nodes[:3] + ([f"... {len(emit.nodes) - 3} more"]
                                      if len(emit.nodes) > 3 else [])
            reason = f"layer for {shown} failed: {_msg(e)}"
            for n in [n for n in gv.order if n in set(emit.nodes) and n in gv.live]:
                fb = _fallback(gv, gv.nodes[n], reason, op_emit)
                self.by_output.update({t: fb for t in fb.outputs})
                self._emit(fb)
            return
        if emit.fallback:
            for n in emit.nodes:
                self._unsupported(n, emit.reason)

    def _unsupported(self, node, reason):
        self.unsupported.append({"node": node, "op": self.gv.nodes[node].op,
                                 "reason": reason})

    def _apply(self, emit):
        name = self.unique(emit.name or emit.nodes[0])
        layer = emit.make(name)
        key = _share_key(layer, emit)
        reuse = None
        for w in emit.weights:
            b = w.binding
            if b is not None and b.name in self.owner:
                prev = self.owner[b.name]
                if self.layer_key.get(id(prev)) == key:
                    reuse = prev
                else:
                    self.shared.append({"variable": b.name, "layers": [prev.name, name],
                                        "reason": "used by two different ops; exported as "
                                                  "two separate Keras weights"})
        if reuse is not None:
            self.names.discard(name)
            layer = reuse
        xs = [self.kt[t] for t in emit.inputs]
        y = layer(xs[0] if len(xs) == 1 else xs)
        import keras   # nested outputs (stacked RNN states) flatten in order
        ys = keras.tree.flatten(y)
        if len(ys) != len(emit.outputs):
            raise ValueError(f"layer {layer.name} gave {len(ys)} outputs, expected "
                             f"{len(emit.outputs)}")
        variables = []
        for w in emit.weights:
            var = layer.weights[w.attr] if isinstance(w.attr, int) else getattr(layer, w.attr)
            if reuse is None:
                _assign(var, w, layer.name)
            if w.binding is not None and w.index is not None and reuse is None:
                self.index_maps.setdefault(var.path, {})[w.binding.name] = \
                    np.asarray(w.index, dtype=np.int64)
            if w.binding is not None:
                self.used_vars.add(w.binding.name)
                self.owner.setdefault(w.binding.name, layer)
                entry = {"variable": w.binding.name, "role": w.binding.role,
                         "weight": var.path, "trainable": bool(var.trainable)}
                note = w.note or self.gv.notes.get(w.binding.name, "")
                if note:
                    entry["note"] = note
                variables.append(entry)
        for t, v in zip(emit.outputs, ys):
            self.kt[t] = v
        if reuse is None:
            self.layer_key[id(layer)] = key
            self.layer_weights[layer.name] = (emit.standard, list(layer.weights))
        self.bindings.append(LayerBinding(
            layer=layer.name, keras_class=type(layer).__name__, tf_nodes=list(emit.nodes),
            tf_inputs=list(emit.inputs), tf_outputs=list(emit.outputs),
            variables=variables, standard=emit.standard))

    def _report(self, inputs):
        layers = []
        for b in self.bindings:
            layers.append({"layer": b.layer, "name": b.layer, "keras_class": b.keras_class,
                           "standard": b.standard, "tf_nodes": b.tf_nodes,
                           "tf_inputs": b.tf_inputs, "tf_outputs": b.tf_outputs,
                           "variables": b.variables})
        sums = {True: {"count": 0, "params": 0}, False: {"count": 0, "params": 0}}
        for standard, weights in self.layer_weights.values():
            for w in weights:
                sums[standard]["count"] += 1
                sums[standard]["params"] += int(np.prod(w.shape))
        by_op = {}
        for u in self.unsupported:
            by_op[u["op"]] = by_op.get(u["op"], 0) + 1
        producers = {}
        for b in self.bindings:
            for t in b.tf_outputs:
                producers.setdefault(t, b.layer)
        return {
            "layers": layers,
            "standard_weights": sums[True],
            "custom_weights": sums[False],
            "unsupported": {"by_op": by_op, "nodes": self.unsupported},
            "inputs": self.input_info,
            "outputs": [{"tf": o, "layer": producers.get(o)} for o in self.gv.outputs],
            "shared_variables": self.shared,
            "unused_variables": sorted(v.name for v in self.variables
                                       if v.name not in self.used_vars and not any(
                                           u.startswith(v.name + "/part_")
                                           for u in self.used_vars)),
            "warnings": self.warnings + list(getattr(self.gv, "warnings", [])),
        }


def _cause_first(problem):
    """Sort key: a handler's or pattern's own refusal first (`family.fn: Unsupported: …`),
    then the rest, then the nodes that only failed because an input did."""
    if "is unavailable (its producer failed)" in problem:
        return 2
    return 0 if re.search(r"\b\w+\.\w+: Unsupported: ", problem) else 1


def _prune(emits, outputs):
    need = set(outputs)
    keep = []
    for e in reversed(emits):
        if any(o in need for o in e.outputs):
            keep.append(e)
            # provided now: an earlier emit of the same tensors (a node a later pattern
            # also covers, e.g. the last step of an unrolled RNN) is not needed for them
            need.difference_update(e.outputs)
            need.update(e.inputs)
    return keep[::-1]


def _share_key(layer, emit):
    cfg = dict(layer.get_config())
    cfg.pop("name", None)
    return (type(layer).__name__, json.dumps(cfg, sort_keys=True, default=str),
            tuple((str(w.attr), w.binding.name if w.binding else None, w.note)
                  for w in emit.weights))


def _assign(var, w, layer_name):
    value = np.asarray(w.value)
    if tuple(var.shape) != value.shape:
        who = f"variable {w.binding.name!r}" if w.binding else "constant"
        raise ValueError(f"{who}: shape {list(value.shape)} does not fit weight "
                         f"{layer_name}/{w.attr} of shape {list(var.shape)}")
    if str(var.dtype) != str(value.dtype):
        raise ValueError(f"weight {var.path}: dtype {var.dtype}, value is {value.dtype}")
    var.assign(value)
    if w.attr in MOVING_ATTRS:
        var.trainable = False
    elif w.trainable is not None:
        var.trainable = bool(w.trainable)
    elif w.binding is not None:
        var.trainable = bool(w.binding.trainable)
    else:
        var.trainable = False
