"""Framework-free graph IR over a GraphDef: nodes, consumers, function bodies, scopes,
training machinery, the inference subgraph and the compact `/graph` JSON.

Heuristics (all plain loops, linear in the graph size):
- machinery: ops of saving/restoring, summaries, optimizers, assignments and variable
  initialization, anything under a `gradients*`/`save*`/`init`/optimizer root scope or an
  `Initializer`/`AssignMovingAvg` scope; then every node that does not depend on a model
  input and whose consumers are all machinery (optimizer slots, learning rates, ...).
- inputs: placeholders / iterator / queue outputs that reach the chosen outputs
  (a PlaceholderWithDefault keeps its default and is not an input). Placeholders that
  never meet a weight directly (labels, targets) start a loss branch.
- outputs: sinks of the data-dependent, non-machinery part; sinks in a loss/metric branch are
  dropped; among the rest, prediction-like names (probs, predictions, output, logits, softmax)
  or ops (Softmax, Sigmoid, ArgMax) win. With no sink left, the model-side inputs of the
  loss ops (e.g. the logits of a cross-entropy) are used.
- a MetaGraphDef signature (SavedModel signature_def, session-bundle signatures) overrides
  both when present; with several, the first of: numeric (non-string) inputs, then
  `serving_default`, then a predict method, then by key.
- a serialized-example input (a string placeholder, or signature input, feeding a
  parse/decode op such as ParseExample) is replaced by the decoded tensors the outputs use:
  the `tf.identity` that names a decoded feature (`x = tf.identity(parsed["x"])`), else the
  decode op itself when its output 0 is the one used. The string front end is a serving
  wrapper, not the model.
"""
import contextlib
import gc
import math
import re

# Ops that pass a value through unchanged (for following a variable to its users).
PASS_THROUGH = frozenset(
    {"Identity", "Cast", "ReadVariableOp", "Enter", "RefEnter", "Snapshot", "StopGradient",
     "RefIdentity", "Switch", "RefSwitch", "Merge", "RefMerge", "NextIteration", "Exit"}
)
VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp", "AutoReloadVariable"})
INPUT_OPS = frozenset(
    {"Placeholder", "PlaceholderV2", "PlaceholderWithDefault", "IteratorGetNext",
     "QueueDequeueManyV2", "QueueDequeueV2", "QueueDequeueUpToV2", "QueueDequeueMany",
     "QueueDequeue", "QueueDequeueUpTo"}
)
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
LOSS_OPS = frozenset(
    {"SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits", "CTCLoss",
     "CTCLossV2", "L2Loss", "SigmoidCrossEntropyWithLogits", "EditDistance"}
)
_MACHINERY_OPS = frozenset(
    {"Assign", "AssignAdd", "AssignSub", "AssignVariableOp", "AssignAddVariableOp",
     "AssignSubVariableOp", "SaveV2", "RestoreV2", "SaveSlices", "RestoreSlice", "Save",
     "Restore", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
     "VarIsInitializedOp", "IsVariableInitialized", "NoOp", "ScatterAdd", "ScatterSub",
     "ScatterUpdate", "ResourceScatterAdd", "ResourceScatterUpdate", "MergeSummary",
     "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary", "AudioSummaryV2",
     "TensorSummary", "TensorSummaryV2", "WriteSummary", "WriteScalarSummary",
     "WriteHistogramSummary", "WriteImageSummary", "FlushSummaryWriter", "SummaryWriter",
     "CreateSummaryFileWriter", "CloseSummaryWriter", "DestroyResourceOp"}
)
_MACHINERY_PREFIXES = ("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")
_MACHINERY_ROOT = re.compile(
    r"^(gradients|save|init|init_all_tables|report_uninitialized_variables|summaries|"
    r"train|training|train_op|optimizer|Adam|AdamW|GradientDescent|Momentum|RMSProp|Adagrad|"
    r"Adadelta|Ftrl|ProximalAdagrad|ExponentialMovingAverage|"
    r"global_step|increment_global_step|group_deps)(_\d+)?$"
)
_GRADIENTS_SCOPE = re.compile(r"^gradients(_\d+)?$")
_MACHINERY_PART = frozenset({"Initializer", "AssignMovingAvg", "AssignMovingAvg_1", "initial_value"})
_LOSS_FEED_OPS = frozenset(
    {"SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits", "CTCLoss", "CTCLossV2",
     "SigmoidCrossEntropyWithLogits"}
)
_LOSS_NAME = re.compile(
    r"(^|_)(loss|losses|cross_entropy|xent|entropy|cost|accuracy|metrics?|mse|"
    r"edit_distance|ler|l2_loss|regularization|regularizer)(_\d+)?($|_)", re.I
)
_PRED_NAME = re.compile(
    r"^(probs?|probabilities|predictions?|preds?|outputs?|logits|softmax|y_hat|y_pred|scores|"
    r"classes|class_ids|y|out)(_\d+)?$", re.I
)
_PRED_OPS = frozenset({"Softmax", "Sigmoid", "ArgMax", "TopKV2", "LogSoftmax"})
_DANGLING_OPS = frozenset({"Identity", "ReadVariableOp", "Const"})
_DT_STRING = 7  # types.proto DT_STRING
# Ops that turn serialized strings into tensors: what a serving front end feeds the model.
DECODE_OPS = frozenset(
    {"ParseExample", "ParseExampleV2", "ParseSingleExample", "ParseSequenceExample",
     "ParseSequenceExampleV2", "ParseSingleSequenceExample", "DecodeRaw", "DecodePaddedRaw",
     "DecodeCSV", "DecodeJSONExample", "DecodeProtoV2", "DecodeBase64", "DecodeCompressed",
     "DecodeJpeg", "DecodePng", "DecodeBmp", "DecodeGif", "DecodeImage", "DecodeAndCropJpeg",
     "DecodeWav", "ParseTensor", "StringToNumber"}
)
_NAMING_OPS = frozenset({"Identity", "Snapshot"})  # tf.identity(parsed["x"], name="x")
_NO_OUTPUT_OPS = frozenset({"NoOp", "Assert", "Print", "PrintV2"}) | _MACHINERY_OPS


@contextlib.contextmanager
def no_gc():
    """Pause the cyclic GC while building many small objects (3x faster on 100k nodes)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_input(text):
    """`'a:1'` → ('a', 1, False); `'^a'` → ('a', 0, True); `'a'` → ('a', 0, False)."""
    if text.startswith("^"):
        return text[1:], 0, True
    name, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return name, int(port), False
    return text, 0, False


class Node:
    __slots__ = ("index", "name", "op", "inputs", "input_ports", "control", "attr", "scope", "proto")

    def __init__(self, index, name, op, attr, proto):
        self.index, self.name, self.op, self.attr, self.proto = index, name, op, attr, proto
        self.inputs, self.input_ports, self.control = [], [], []
        self.scope = name.rpartition("/")[0]

    def __repr__(self):
        return "Node(%r, %r)" % (self.name, self.op)


class Body:
    """Nodes and data edges of a graph or a function body.

    `nodes` maps name → Node; `node_list` is in file order; `consumers[i]` lists
    (consumer index, input slot) for the data edges out of node i.
    """

    def __init__(self, entries, args=()):
        with no_gc():
            self._build(entries, args)

    def _build(self, entries, args):
        self.node_list, self.nodes, self.args = [], {}, list(args)
        for name in self.args:  # function arguments are pseudo nodes
            self._add(name, "_Arg", {}, None)
        raw_inputs = []
        for proto in entries:
            self._add(proto.name, proto.op, proto.attr, proto)
            raw_inputs.append(proto.input)
        offset = len(self.args)
        index = self.nodes
        self.consumers = [[] for _ in self.node_list]
        self.control_consumers = [[] for _ in self.node_list]
        for k, inputs in enumerate(raw_inputs):
            node = self.node_list[offset + k]
            for text in inputs:
                name, port, is_control = self._resolve(text)
                src = index.get(name)
                if src is None:
                    continue  # dangling input (pruned graph): ignore the edge
                if is_control:
                    node.control.append(src.index)
                    self.control_consumers[src.index].append(node.index)
                else:
                    self.consumers[src.index].append((node.index, len(node.inputs)))
                    node.inputs.append(src.index)
                    node.input_ports.append(port)

    def _add(self, name, op, attr, proto):
        node = Node(len(self.node_list), name, op, attr, proto)
        self.node_list.append(node)
        self.nodes[name] = node

    def _resolve(self, text):
        return parse_input(text)

    def __len__(self):
        return len(self.node_list)

    def passthrough_users(self, start_indices):
        """(node index, slot) of the non-pass-through ops that use the given nodes' values,
        following Identity/Cast/ReadVariableOp/Enter chains; also the pass-through nodes seen."""
        users, seen, stack = [], set(start_indices), list(start_indices)
        while stack:
            i = stack.pop()
            for j, slot in self.consumers[i]:
                op = self.node_list[j].op
                if op in PASS_THROUGH:
                    if j not in seen:
                        seen.add(j)
                        stack.append(j)
                else:
                    users.append((j, slot))
        return users, seen


class FunctionBody(Body):
    """A `GraphDef.library` function: inputs are `arg`, `node:out_arg:k` or `^node`."""

    def __init__(self, fdef):
        self.name = fdef.signature.name
        super().__init__(fdef.node_def, [a.name for a in fdef.signature.input_arg])

    def _resolve(self, text):
        if text.startswith("^"):
            return text[1:], 0, True
        parts = text.split(":")
        if len(parts) == 3 and parts[2].isdigit():
            return parts[0], int(parts[2]), False
        return parts[0], 0, False


def called_functions(node):
    """[(function name, first input slot mapped to arg 0)] for call / While / If / Case ops."""
    attr, op = node.attr, node.op
    if op in CALL_OPS and "f" in attr:
        return [(attr["f"].func.name, 0)]
    if op in ("While", "StatelessWhile"):
        return [(attr[k].func.name, 0) for k in ("body", "cond") if k in attr]
    if op in ("If", "StatelessIf"):
        return [(attr[k].func.name, 1) for k in ("then_branch", "else_branch") if k in attr]
    if op in ("Case", "StatelessCase") and "branches" in attr:
        return [(f.name, 1) for f in attr["branches"].list.func]
    return []


class GraphIR(Body):
    """The top-level graph plus its function library, scope tree and inference subgraph."""

    def __init__(self, graph_def, signature=None):
        super().__init__(graph_def.node)
        self.graph_def = graph_def
        self.signature = signature  # (inputs, outputs) from a MetaGraphDef signature, or None
        self._fdefs = {f.signature.name: f for f in graph_def.library.function}
        self._functions = {}
        self._machinery = None
        self._data_dependent = None
        self._default_io = None
        self._scopes = None

    # -- functions -------------------------------------------------------------
    def function(self, name):
        """The FunctionBody of a library function (parsed on first use), or None."""
        if name not in self._functions:
            fdef = self._fdefs.get(name)
            self._functions[name] = FunctionBody(fdef) if fdef is not None else None
        return self._functions[name]

    def calls(self, node):
        """[(FunctionBody, first slot)] the node calls, including ops named after a function."""
        found = [(self.function(n), s) for n, s in called_functions(node)]
        if node.op in self._fdefs:
            found.append((self.function(node.op), 0))
        return [(f, s) for f, s in found if f is not None]

    # -- machinery -------------------------------------------------------------
    @property
    def machinery(self):
        """List of bools: training machinery (see module docstring)."""
        if self._machinery is None:
            with no_gc():
                self._machinery = self._compute_machinery()
        return self._machinery

    def _compute_machinery(self):
        nodes = self.node_list
        mach = [False] * len(nodes)
        for node in nodes:
            op = node.op
            if op in _MACHINERY_OPS or op.startswith(_MACHINERY_PREFIXES) or "Summary" in op:
                mach[node.index] = True
                continue
            name = node.name
            root = name.partition("/")[0]
            if _MACHINERY_ROOT.match(root) or root.startswith("gradients"):
                mach[node.index] = True
            elif "/" in name:
                parts = name.split("/")
                # towers put their backward pass in <tower>/gradients/…
                if _MACHINERY_PART.intersection(parts) or any(_GRADIENTS_SCOPE.match(p) for p in parts[:-1]):
                    mach[node.index] = True
        # Nodes not fed by model inputs whose every consumer is machinery; unused reads and
        # constants outside the data path (an optimizer slot's `read`) count as machinery.
        dep = self.data_dependent
        for node in nodes:
            i = node.index
            if (not dep[i] and node.op in _DANGLING_OPS and not self.consumers[i]
                    and not self.control_consumers[i]):
                mach[i] = True
        pending = [len(self.consumers[i]) + len(self.control_consumers[i]) for i in range(len(nodes))]
        producers = [node.inputs + node.control for node in nodes]
        stack = [i for i in range(len(nodes)) if mach[i]]
        while stack:
            i = stack.pop()
            for src in producers[i]:  # one decrement per edge (each node is popped once)
                if mach[src]:
                    continue
                pending[src] -= 1
                if pending[src] <= 0 and not dep[src]:
                    mach[src] = True
                    stack.append(src)
        return mach

    @property
    def data_dependent(self):
        """List of bools: reachable (data edges) from a model-input op."""
        if self._data_dependent is None:
            dep = [False] * len(self.node_list)
            stack = [n.index for n in self.node_list if n.op in INPUT_OPS and not _is_machinery_name(n.name)]
            for i in stack:
                dep[i] = True
            while stack:
                i = stack.pop()
                for j, _ in self.consumers[i]:
                    if not dep[j]:
                        dep[j] = True
                        stack.append(j)
            self._data_dependent = dep
        return self._data_dependent

    # -- inference subgraph -----------------------------------------------------
    def default_io(self):
        """(input node names, output tensor names) of the inference subgraph."""
        if self._default_io is None:
            with no_gc():
                io = self._signature_io() or self._guess_io()
                self._default_io = (self._decoded_inputs(*io), io[1])
        return list(self._default_io[0]), list(self._default_io[1])

    def _signature_candidates(self):
        """[(key, method, inputs, outputs)] from `signature`: one (inputs, outputs) pair or a
        list of (key, method, inputs, outputs); tensors not in the graph are dropped."""
        sig = self.signature
        if not sig:
            return []
        if len(sig) == 2 and all(isinstance(t, str) for t in list(sig[0]) + list(sig[1])):
            sig = [("serving_default", "", sig[0], sig[1])]
        out = []
        for key, method, ins, outs in sig:
            outs = [t if ":" in t else t + ":0" for t in outs if t.split(":")[0] in self.nodes]
            ins = [t.split(":")[0] for t in ins if t.split(":")[0] in self.nodes]
            if outs:
                out.append((key, method or "", ins, outs))
        return out

    def _signature_io(self):
        """(inputs, outputs) of the best signature (module docstring), or None."""
        best = None
        for key, method, ins, outs in self._signature_candidates():
            strings = any(self._is_string(t) for t in ins)
            rank = (strings, key != "serving_default", "predict" not in method, key)
            if best is None or rank < best[0]:
                best = (rank, ins, outs)
        if best is None:
            return None
        ins, outs = best[1], best[2]
        numeric = [t for t in outs if not self._is_string(t)]
        return list(ins), numeric or list(outs)  # e.g. a classifier's string `classes`

    def _is_string(self, tensor):
        """True when the tensor's dtype is known (dtype / T attr) and is DT_STRING."""
        name, port, _ = parse_input(tensor)
        node = self.nodes.get(name)
        if node is None or port != 0:
            return False
        for key in ("dtype", "T"):
            if key in node.attr:
                return node.attr[key].type == _DT_STRING
        return False

    def _decoded_inputs(self, inputs, outputs):
        """`inputs` with each serialized-example input replaced by the decoded tensors the
        outputs use (module docstring); an input that cannot be replaced stays."""
        needed = None
        result = []
        for name in inputs:
            node = self.nodes.get(name)
            frontier = None
            if node is not None and self._is_string(name):
                if needed is None:
                    starts = [self.nodes[t.split(":")[0]].index for t in outputs
                              if t.split(":")[0] in self.nodes]
                    needed = self._closure(starts, ())
                frontier = self._decoded_frontier(node.index, needed)
            for n in frontier or [name]:
                if n not in result:
                    result.append(n)
        return result

    def _decoded_frontier(self, start, needed):
        """Names of the nodes where the decoded values of string input `start` enter the
        part of the graph the outputs need, or None when it is not a decode front end."""
        users, _ = self.passthrough_users([start])
        users = [j for j, _ in users if j in needed]
        if not users or any(self.node_list[j].op not in DECODE_OPS for j in users):
            return None
        frontier = []
        for d in sorted(set(users)):
            by_port = {}
            for j, slot in self.consumers[d]:
                if j in needed:
                    by_port.setdefault(self.node_list[j].input_ports[slot], []).append(j)
            for port in sorted(by_port):
                named = [j for j in by_port[port] if self.node_list[j].op in _NAMING_OPS]
                if named and len(named) == len(by_port[port]):
                    frontier.extend(named)
                elif port == 0:
                    frontier.append(d)  # fed in place of the decode op's output 0
                else:
                    return None  # an unnamed output k > 0 cannot be a fed node
        return [self.node_list[i].name for i in sorted(set(frontier))] or None

    def _guess_io(self):
        nodes, mach, dep = self.node_list, self.machinery, self.data_dependent
        live = [dep[i] and not mach[i] for i in range(len(nodes))]
        loss = self._loss_region(live)
        sinks = []
        for node in nodes:
            i = node.index
            if not live[i] or node.op in INPUT_OPS or node.op in _NO_OUTPUT_OPS:
                continue
            if any(live[j] for j, _ in self.consumers[i]):
                continue
            if "T" in node.attr and node.attr["T"].type == 20:  # a resource handle passed along
                continue
            sinks.append(i)
        model_sinks = [i for i in sinks if not loss[i]]
        preferred = [i for i in model_sinks if _prediction_like(nodes[i])]
        chosen = preferred or self._loss_feeds(live, loss)
        if not chosen:  # no loss: the sinks that carry model weights, else all sinks
            var_fed = self._variable_fed()
            chosen = [i for i in model_sinks if var_fed[i]] or model_sinks
        outputs = ["%s:0" % nodes[i].name for i in chosen]
        return self._feeding_inputs(chosen), outputs

    def _feeding_inputs(self, starts):
        """Input ops the nodes `starts` depend on, in graph order; a PlaceholderWithDefault
        (keep_prob, is_training) keeps its default: not an input."""
        nodes = self.node_list
        return [nodes[i].name for i in sorted(self._closure(starts, ()))
                if nodes[i].op in INPUT_OPS and nodes[i].op != "PlaceholderWithDefault"]

    def inputs_for(self, outputs):
        """Default inputs for explicitly chosen output tensors: the input ops they depend on,
        a serialized-example front end replaced by its decoded features (as default_io)."""
        starts = [self.nodes[t.split(":")[0]].index for t in outputs if t.split(":")[0] in self.nodes]
        with no_gc():
            return self._decoded_inputs(self._feeding_inputs(starts), outputs)

    def _loss_region(self, live):
        """Live nodes downstream of a loss op, a loss-named node or a label placeholder."""
        nodes = self.node_list
        loss = [False] * len(nodes)
        stack = []
        for node in nodes:
            if live[node.index] and (node.op in LOSS_OPS or _loss_named(node.name)):
                loss[node.index] = True
                stack.append(node.index)
        if stack:
            for i in self._label_inputs(live):
                for j, _ in self.consumers[i]:
                    if live[j] and not loss[j]:
                        loss[j] = True
                        stack.append(j)
        while stack:
            i = stack.pop()
            for j, _ in self.consumers[i]:
                if live[j] and not loss[j]:
                    loss[j] = True
                    stack.append(j)
        return loss

    def _label_inputs(self, live):
        """Input ops whose values never meet a weight directly: labels / targets of a loss.
        (A model input, even keep_prob or is_training, reaches some op that reads a variable.)"""
        reads = self._variable_reads()
        labels = []
        for node in self.node_list:
            if node.op not in INPUT_OPS or not live[node.index]:
                continue
            seen, stack, meets = {node.index}, [node.index], False
            while stack and not meets:
                i = stack.pop()
                for j, _ in self.consumers[i]:
                    if not live[j]:
                        continue
                    if any(src in reads for src in self.node_list[j].inputs):
                        meets = True
                        break
                    if j not in seen:
                        seen.add(j)
                        stack.append(j)
            if not meets:
                labels.append(node.index)
        return labels

    def _variable_reads(self):
        """Indices of variable nodes and the pass-through chains reading them."""
        reads = set()
        for node in self.node_list:
            if node.op in VARIABLE_OPS:
                _, seen = self.passthrough_users([node.index])
                reads |= seen
        return reads

    def _loss_feeds(self, live, loss):
        """Model-side inputs of the loss: the logits of a cross-entropy / CTC op, else the
        weight-carrying inputs of the first nodes of name-based loss branches."""
        nodes, var_fed = self.node_list, self._variable_fed()
        for ops in (_LOSS_FEED_OPS, None):
            feeds = []
            for node in nodes:
                i = node.index
                if not (loss[i] and live[i]) or (ops is not None and node.op not in ops):
                    continue
                for src in node.inputs:
                    if live[src] and not loss[src] and var_fed[src] and src not in feeds:
                        feeds.append(src)
            if feeds:
                return feeds
        return []

    def _variable_fed(self):
        if getattr(self, "_var_fed", None) is not None:
            return self._var_fed
        fed = [False] * len(self.node_list)
        stack = [n.index for n in self.node_list if n.op in VARIABLE_OPS]
        for i in stack:
            fed[i] = True
        while stack:
            i = stack.pop()
            for j, _ in self.consumers[i]:
                if not fed[j]:
                    fed[j] = True
                    stack.append(j)
        self._var_fed = fed
        return fed

    def _closure(self, starts, stops):
        """Indices reachable backwards over data edges from `starts`, not past `stops`."""
        stops = set(stops)
        seen = set(starts)
        stack = [i for i in starts if i not in stops]
        while stack:
            i = stack.pop()
            for src in self.node_list[i].inputs:
                if src not in seen:
                    seen.add(src)
                    if src not in stops:
                        stack.append(src)
        return seen

    def forward_set(self, inputs=None, outputs=None):
        """Node indices of the inference subgraph between inputs and outputs (defaults if None)."""
        if inputs is None or outputs is None:
            d_in, d_out = self.default_io()
            if inputs is None:
                inputs = d_in if outputs is None else self.inputs_for(outputs)
            outputs = d_out if outputs is None else outputs
        starts = [self.nodes[t.split(":")[0]].index for t in outputs if t.split(":")[0] in self.nodes]
        stops = [self.nodes[t.split(":")[0]].index for t in inputs if t.split(":")[0] in self.nodes]
        return self._closure(starts, stops)

    # -- scopes ---------------------------------------------------------------
    def scopes(self):
        """(scope list [{id, name, parent, node_count, machinery}], scope id per node)."""
        if self._scopes is None:
            with no_gc():
                self._scopes = self._build_scopes()
        return self._scopes

    def _build_scopes(self):
        ids, names, parents = {"": 0}, [""], [None]
        direct, direct_mach = [0], [0]
        node_scope = []
        mach = self.machinery
        for node in self.node_list:
            scope = node.scope
            sid = ids.get(scope)
            if sid is None:
                # create the missing chain, outermost first
                missing, s = [], scope
                while s not in ids:
                    missing.append(s)
                    s = s.rpartition("/")[0]
                for s in reversed(missing):
                    ids[s] = len(names)
                    names.append(s)
                    parents.append(ids[s.rpartition("/")[0]])
                    direct.append(0)
                    direct_mach.append(0)
                sid = ids[scope]
            node_scope.append(sid)
            direct[sid] += 1
            direct_mach[sid] += mach[node.index]
        total, total_mach = list(direct), list(direct_mach)
        for sid in range(len(names) - 1, 0, -1):  # children are created after parents
            p = parents[sid]
            total[p] += total[sid]
            total_mach[p] += total_mach[sid]
        scopes = [
            {"id": sid, "name": names[sid], "parent": parents[sid], "node_count": total[sid],
             "machinery": total[sid] > 0 and total_mach[sid] == total[sid]}
            for sid in range(len(names))
        ]
        return scopes, node_scope

    # -- JSON -----------------------------------------------------------------
    def to_json(self, run, source, variable_of=None, inputs=None, outputs=None):
        """The `/graph` response of http_api.md. variable_of: node name → logical variable."""
        with no_gc():
            return self._to_json(run, source, variable_of, inputs, outputs)

    def _to_json(self, run, source, variable_of, inputs, outputs):
        variable_of = variable_of or {}
        d_in, d_out = self.default_io()
        if inputs is None:
            inputs = d_in if outputs is None else self.inputs_for(outputs)
        inputs = list(inputs)
        outputs = d_out if outputs is None else list(outputs)
        forward = self.forward_set(inputs, outputs)
        mach = self.machinery
        scopes, node_scope = self.scopes()
        out = []
        append = out.append
        for node in self.node_list:
            i = node.index
            append({
                "id": i, "name": node.name, "op": node.op, "scope": node_scope[i],
                "inputs": node.inputs, "control_inputs": node.control,
                "attrs": viewer_attrs(node.attr) if node.attr else {},
                "variable": variable_of.get(node.name), "machinery": mach[i],
                "forward": i in forward,
            })
        return {"run": run, "source": source, "node_count": len(out), "nodes": out,
                "scopes": scopes, "inputs": inputs, "outputs": outputs}


def _is_machinery_name(name):
    root = name.partition("/")[0]
    return bool(_MACHINERY_ROOT.match(root)) or root.startswith("gradients")


def _loss_named(name):
    return any(_LOSS_NAME.search(part) for part in name.split("/"))


def _prediction_like(node):
    if node.op in _PRED_OPS:
        return True
    parts = node.name.split("/")
    return any(_PRED_NAME.match(p) for p in parts)


# -- attrs for the viewer ------------------------------------------------------
_VIEW_ATTRS = ("dtype", "T", "shape", "strides", "padding", "data_format", "transpose_a",
               "transpose_b", "adj_x", "adj_y", "dilations", "ksize", "epsilon", "axis",
               "num_split", "N", "is_training", "value", "keep_dims", "forget_bias",
               "out_type", "DstT", "SrcT", "Tidx", "squeeze_dims", "f", "body", "cond")
_VIEW_SET = frozenset(_VIEW_ATTRS)
_DTYPES = None


def _dtype_name(enum):
    global _DTYPES
    if _DTYPES is None:
        from tensorboard.compat.proto import types_pb2

        renames = {"float": "float32", "double": "float64", "half": "float16"}
        _DTYPES = {}
        for key, value in types_pb2.DataType.items():
            name = key[3:].lower()
            ref = name.endswith("_ref")
            base = name[:-4] if ref else name
            _DTYPES[value] = renames.get(base, base) + ("_ref" if ref else "")
    return _DTYPES.get(enum, str(enum))


def shape_list(shape_proto):
    """TensorShapeProto → list with None for unknown dims, or None for unknown rank."""
    if shape_proto.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape_proto.dim]


def scalar_value(tensor):
    """Value of a scalar (or one-element) TensorProto, or None."""
    dims = [d.size for d in tensor.tensor_shape.dim]
    count = 1
    for d in dims:
        count *= d
    if count != 1:
        return None
    for field in ("float_val", "double_val", "int_val", "int64_val", "bool_val", "half_val"):
        values = getattr(tensor, field)
        if len(values):
            return values[0]
    if tensor.string_val:
        return tensor.string_val[0].decode("utf-8", "replace")
    if tensor.tensor_content:
        import numpy as np

        dtype = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}.get(tensor.dtype)
        if dtype is not None:
            return np.frombuffer(tensor.tensor_content, dtype=dtype)[0].item()
    return None


def _safe(value):
    """Non-finite floats as strings ("inf", "nan"): strict JSON has no literal for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def viewer_attrs(attr):
    """The JSON-safe attrs a viewer needs."""
    out = {}
    for key, value in attr.items():  # a node has few attrs: walk them, not the wanted list
        if key not in _VIEW_SET:
            continue
        kind = value.WhichOneof("value")
        if kind == "type":
            out[key] = _dtype_name(value.type)
        elif kind == "shape":
            out[key] = shape_list(value.shape)
        elif kind in ("i", "f", "b"):
            out[key] = _safe(getattr(value, kind))
        elif kind == "s":
            out[key] = value.s.decode("utf-8", "replace")
        elif kind == "list":
            lst = value.list
            out[key] = list(lst.i) or [_safe(f) for f in lst.f] or [s.decode("utf-8", "replace") for s in lst.s] or [
                _dtype_name(t) for t in lst.type]
        elif kind == "tensor":
            out[key] = _safe(scalar_value(value.tensor))
            if out[key] is None:
                del out[key]
                out["value_shape"] = [d.size for d in value.tensor.tensor_shape.dim]
        elif kind == "func":
            out[key] = value.func.name
    return out
