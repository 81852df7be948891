"""Original TF graph vs exported Keras model: per layer (isolated, cumulative), gradients.

The original runs in a `tf.compat.v1` Session over an imported copy of the GraphDef; each
variable's read tensors are mapped (`input_map`) to one placeholder holding the checkpoint
value, so gradients w.r.t. variables are plain `tf.gradients` w.r.t. those placeholders.
Error model: an element passes if |keras - original| <= atol + rtol * |original|
(np.allclose); atol and rtol are never below FLOAT_NOISE (1.2e-7). Relative error is
|keras - original| / max(|original|, atol).
Gradients are checked norm-wise: every element within atol + rtol * max|original gradient|
of that variable (the row's `tolerance`). A gradient element is a sum over batch, steps and
units; float32 rounding error of a sum scales with its terms, and so with the tensor's
largest values, not with the element (which may be a near-cancellation close to 0).
"""

import math
import re

import numpy as np

from tb_varmap.errors import BadInput

FLOAT_NOISE = 1.2e-7      # ~float32 epsilon: differences this small never fail
SAMPLE_SIZE = 200
HIST_BINS = 20
UNKNOWN_DIM = 8          # size given to an unknown non-batch dim of a random input
WORST = 5

OK, INACCURATE, FAILED = "OK", "INACCURATE", "FAILED"

# ops that pass integer ids through unchanged (for tracing ids to a gather)
_ID_PASS = {"Identity", "Cast", "Reshape", "ExpandDims", "Squeeze", "StridedSlice",
            "Slice", "Transpose", "Unpack", "Split", "SplitV", "Pack", "ConcatV2",
            "Concat", "Tile", "GatherV2", "Gather", "Unique",
            "ReverseV2", "ReverseSequence", "TensorArrayScatterV3", "Enter",
            "FloorMod", "FloorDiv", "Mod", "DynamicPartition"}   # partitioned lookups
_GATHERS = {"Gather": 1, "GatherV2": 1, "ResourceGather": 1, "GatherNd": 1,
            "ResourceGatherNd": 1, "SparseSegmentMean": 1, "SparseSegmentSum": 1,
            "SparseSegmentSqrtN": 1}
_VAR_OPS = {"VariableV2", "Variable", "VarHandleOp"}
# ops that take a resource handle and whose gradient TF routes to the handle
_HANDLE_OPS = {"ResourceGather", "ResourceGatherNd", "ReadVariableOp"}


# ---------------------------------------------------------------- graph helpers

def _tf_graph_def(graph_def):
    """bytes / tensorboard GraphDef / TF GraphDef -> TF GraphDef (a copy)."""
    import tensorflow as tf

    if isinstance(graph_def, (bytes, bytearray)):
        data = bytes(graph_def)
    elif hasattr(graph_def, "SerializeToString"):
        data = graph_def.SerializeToString()
    else:
        raise BadInput(f"graph_def: expected bytes or a GraphDef, got {type(graph_def).__name__}")
    out = tf.compat.v1.GraphDef()
    try:
        out.ParseFromString(data)
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"graph_def: not a valid GraphDef ({e})") from None
    return out


def _node_name(name):
    name = name[1:] if name.startswith("^") else name
    return name.split(":")[0]


def _tensor_name(name):
    return name if ":" in name else name + ":0"


def _nodes(gd):
    return {n.name: n for n in gd.node}


def _consumers_of(nodes):
    """{node name: [(consumer NodeDef, input slot)]}, control inputs left out."""
    out = {}
    for n in nodes.values():
        for slot, inp in enumerate(n.input):
            if not inp.startswith("^"):
                out.setdefault(_node_name(inp), []).append((n, slot))
    return out


def _placeholder_spec(node):
    """(tf dtype, shape list with None for unknown dims, or None for unknown rank)."""
    import tensorflow as tf

    dtype = tf.as_dtype(node.attr["dtype"].type)
    shape = None
    if "shape" in node.attr:
        s = node.attr["shape"].shape
        if not s.unknown_rank:
            shape = [d.size if d.size >= 0 else None for d in s.dim]
    # graphs of TF <= 1.1 write `shape {}` for "unknown"; the recorded output shape knows
    if not shape and "_output_shapes" in node.attr and node.attr["_output_shapes"].list.shape:
        s = node.attr["_output_shapes"].list.shape[0]
        if not s.unknown_rank and s.dim:
            shape = [d.size if d.size >= 0 else None for d in s.dim]
    return dtype, shape


def _find_placeholder(nodes, name, what="input"):
    node = nodes.get(_node_name(name))
    if node is None:
        raise BadInput(f"{what} '{name}': no such node in the graph")
    if node.op not in ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault"):
        raise BadInput(f"{what} '{name}': expected a Placeholder node, found op {node.op}")
    return node


# ---------------------------------------------------------------- inputs

def _id_tables(gd, name, variables):
    """Sizes of embedding tables indexed (through value-preserving ops) by placeholder `name`."""
    nodes = _nodes(gd)
    cons = _consumers_of(nodes)
    by_read = {}
    for v in variables:
        for t in v.read_tensors:
            by_read[_tensor_name(t)] = v
            by_read[_node_name(t)] = v
            node = nodes.get(_node_name(t))
            if node is not None and node.op == "ReadVariableOp":
                by_read[_node_name(node.input[0])] = v   # the handle itself
    sizes, seen, todo = [], set(), [name]
    while todo:
        cur = todo.pop()
        if cur in seen or len(seen) > 200:
            continue
        seen.add(cur)
        for node, slot in cons.get(cur, []):
            if node.op in _GATHERS and slot == _GATHERS[node.op]:
                size = _table_size(nodes, node.input[0], by_read)
                if size:
                    sizes.append(size)
            elif node.op in _ID_PASS:
                todo.append(node.name)
    return sizes


def _table_size(nodes, tensor, by_read):
    """Rows of the variable behind `tensor` (following Identity / read ops)."""
    for _ in range(20):
        v = by_read.get(_tensor_name(tensor)) or by_read.get(_node_name(tensor))
        if v is not None and np.ndim(v.value) >= 1:
            return int(np.shape(v.value)[0])
        node = nodes.get(_node_name(tensor))
        if node is None or not node.input:
            return None
        if node.op in _VAR_OPS:
            return None
        tensor = node.input[0]
    return None


def make_inputs(graph_def, inputs, variables, seed, batch=2):
    """Seeded random feeds for placeholder names `inputs`: {name: ndarray}.

    Unknown batch dim -> `batch` (or the first dim that inputs of rank >= 2 fix, when
    they agree), other unknown dims -> UNKNOWN_DIM; floats ~ N(0, 1); ints that index an
    embedding table lie in [0, rows), other ints (lengths, counts) in [1, steps], steps =
    the smallest inner dim (not batch, not features) of the float inputs of rank >= 3 (a
    sequence's time axis), else UNKNOWN_DIM; bools are False.
    """
    gd = _tf_graph_def(graph_def)
    nodes = _nodes(gd)
    rng = np.random.default_rng(seed)
    specs = {}
    for name in inputs:
        key = _node_name(name)
        dtype, shape = _placeholder_spec(_find_placeholder(nodes, name))
        if shape is None:
            raise BadInput(f"input '{key}': placeholder has unknown rank; supply an .npz "
                           f"with a value for '{key}'")
        specs[key] = (dtype, shape)
    fixed = {shape[0] for _, shape in specs.values() if len(shape) >= 2 and shape[0]}
    if len(fixed) == 1:
        batch = fixed.pop()
    feed, shapes = {}, {}
    for key, (dtype, shape) in specs.items():
        shapes[key] = [(batch if i == 0 else UNKNOWN_DIM) if d is None else d
                       for i, d in enumerate(shape)]
    steps = [min(shapes[k][1:-1]) for k, (dtype, _) in specs.items()
             if dtype.is_floating and len(shapes[k]) >= 3]
    for key, (dtype, _) in specs.items():
        feed[key] = _random_value(gd, key, dtype, shapes[key], variables, rng,
                                  min(steps, default=UNKNOWN_DIM))
    return feed


def _random_value(gd, key, dtype, shape, variables, rng, steps=UNKNOWN_DIM):
    if dtype.is_floating:
        return rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    if dtype.is_integer:
        sizes = _id_tables(gd, key, variables)
        low, high = (0, min(sizes)) if sizes else (1, steps + 1)
        return rng.integers(low, max(high, low + 1), size=shape).astype(dtype.as_numpy_dtype)
    if dtype.is_bool:
        return np.zeros(shape, dtype=bool)
    raise BadInput(f"input '{key}': cannot make random values of dtype {dtype.name}; supply "
                   f"an .npz with a value for '{key}'")


def load_inputs_npz(path, graph_def, inputs):
    """Feeds from an .npz whose keys are input placeholder names (checked)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            feed = {k: data[k] for k in data.files}
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"inputs file '{path}': not a readable .npz ({e})") from None
    return check_feed(feed, graph_def, inputs, source=f"inputs file '{path}'")


def check_feed(feed, graph_def, inputs, source="feed"):
    """Validate {placeholder: array}: every input present, shapes/dtypes compatible."""
    gd = _tf_graph_def(graph_def)
    nodes = _nodes(gd)
    out, problems = {}, []
    given = {_node_name(k): k for k in feed}
    for name in inputs:
        key = _node_name(name)
        if key not in given:
            problems.append(f"missing key '{key}' (input placeholder)")
    for key, orig_key in given.items():
        node = nodes.get(key)
        if node is None or node.op not in ("Placeholder", "PlaceholderV2",
                                           "PlaceholderWithDefault"):
            problems.append(f"key '{orig_key}' names no placeholder in the graph")
            continue
        value = np.asarray(feed[orig_key])
        dtype, shape = _placeholder_spec(node)
        want = np.dtype(dtype.as_numpy_dtype) if dtype.is_numpy_compatible else None
        if want is None or not (value.dtype == want or (
                np.can_cast(value.dtype, want, "same_kind")
                and value.dtype.kind == want.kind)):
            problems.append(f"key '{key}': dtype {value.dtype} does not fit placeholder "
                            f"dtype {dtype.name}")
            continue
        if shape is not None and (value.ndim != len(shape) or any(
                d is not None and d != s for d, s in zip(shape, value.shape))):
            problems.append(f"key '{key}': shape {list(value.shape)} does not fit placeholder "
                            f"shape {_shape_str(shape)}")
            continue
        out[key] = value.astype(want, copy=False)
    if problems:
        raise BadInput(f"{source}: " + "; ".join(problems), problems)
    return out


def _shape_str(shape):
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# ---------------------------------------------------------------- comparison

def _num(x):
    """JSON-safe float: NaN -> None, inf -> 'inf' / '-inf'."""
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _brief(error, limit=400):
    """'Type: first meaningful line' of an exception, cut to `limit` characters (TF errors
    carry whole stack traces)."""
    lines = [l.strip() for l in str(error).splitlines() if l.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    if len(lines) > 1 and lines[0].endswith(":"):   # "Graph execution error:" + the cause
        text += " " + lines[1]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def failed(reason):
    return {"max_abs": None, "max_rel": None, "mean_abs": None, "status": FAILED,
            "reason": reason}


def compare(keras_value, original, atol=1e-5, rtol=1e-5, scale=0.0):
    """Stats of keras vs original: {max_abs, max_rel, mean_abs, status[, reason]}.
    rtol applies to max(|original|, scale) (scale: see compare_gradient)."""
    a = np.asarray(keras_value)
    b = np.asarray(original)
    if a.shape != b.shape:
        return failed(f"shape mismatch: keras {list(a.shape)} vs original {list(b.shape)}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0, "mean_abs": 0.0, "status": OK}
    atol = max(float(atol), FLOAT_NOISE)
    rtol = max(float(rtol), FLOAT_NOISE)
    both_nan = np.isnan(a) & np.isnan(b)
    bad_nan = np.isnan(a) & np.isfinite(b)
    same_inf = np.isinf(a) & (a == b)
    ok_mask = both_nan | same_inf
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(ok_mask, 0.0, np.abs(a - b))
        rel = diff / np.maximum(np.abs(np.where(ok_mask, 1.0, b)), atol)
        within = diff <= atol + rtol * np.maximum(np.abs(np.where(ok_mask, 0.0, b)), scale)
    stats = {"max_abs": _num(np.nanmax(diff) if not np.all(np.isnan(diff)) else np.nan),
             "max_rel": _num(np.nanmax(rel) if not np.all(np.isnan(rel)) else np.nan),
             "mean_abs": _num(np.nanmean(diff) if not np.all(np.isnan(diff)) else np.nan)}
    if bad_nan.any():
        stats.update(status=FAILED,
                     reason=f"{int(bad_nan.sum())} NaN values where the original is finite")
    elif np.isnan(diff).any() or not within.all():
        stats["status"] = INACCURATE
    else:
        stats["status"] = OK
    return stats


def compare_gradient(keras_value, original, atol=1e-5, rtol=1e-5):
    """compare() with rtol relative to the largest finite |original| of the tensor (see
    the module doc); the absolute tolerance used is in the row as `tolerance`."""
    b = np.abs(np.asarray(original, dtype=np.float64))
    b = b[np.isfinite(b)]
    scale = float(b.max()) if b.size else 0.0
    stats = compare(keras_value, original, atol, rtol, scale)
    stats["tolerance"] = max(float(atol), FLOAT_NOISE) + max(float(rtol), FLOAT_NOISE) * scale
    return stats


def sample(values, n=SAMPLE_SIZE):
    """Up to n values spread evenly over the flattened array, as JSON-safe floats."""
    flat = np.asarray(values).reshape(-1)
    if flat.size > n:
        flat = flat[np.linspace(0, flat.size - 1, n).astype(np.int64)]
    return [_num(v) for v in flat.astype(np.float64)]


def error_histogram(keras_value, original, bins=HIST_BINS):
    """Histogram of |keras - original| (finite values): {edges, counts}."""
    a = np.asarray(keras_value, dtype=np.float64).reshape(-1)
    b = np.asarray(original, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        return {"edges": [], "counts": []}
    d = np.abs(a - b)
    d = d[np.isfinite(d)]
    top = float(d.max()) if d.size else 0.0
    counts, edges = np.histogram(d, bins=bins, range=(0.0, top if top > 0 else 1e-12))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# ---------------------------------------------------------------- the original

class _Original:
    """The inference subgraph imported into a fresh graph, variables fed as placeholders."""

    def __init__(self, gd, fetch_nodes, variables, feed):
        import tensorflow as tf

        nodes = _nodes(gd)
        for name in fetch_nodes:
            if name not in nodes:
                raise BadInput(f"tensor '{name}': no such node in the graph")
        from tb_varmap.control_flow_v1 import restore_while_contexts, with_loop_exits

        sub = tf.compat.v1.graph_util.extract_sub_graph(
            gd, with_loop_exits(gd, sorted(set(fetch_nodes))))
        for n in sub.node:  # devices and colocation of a foreign machine do not apply here
            n.device = ""
            if "_class" in n.attr:
                del n.attr["_class"]
        self.nodes = _nodes(sub)
        self.graph = tf.Graph()
        self.var_inputs = {}     # variable name -> placeholder (logical, full value)
        self.var_values = {}
        self.mapped = {}         # original tensor name -> tensor in self.graph
        self.problems = {}       # variable name -> why its gradient cannot be taken
        with self.graph.as_default():
            input_map = self._map_variables(variables, nodes)
            try:
                tf.compat.v1.import_graph_def(sub, input_map=input_map, name="orig")
            except Exception as e:  # noqa: BLE001
                raise BadInput(f"graph_def: TensorFlow cannot import the inference subgraph "
                               f"({_brief(e)})") from None
            self.v1_loops = restore_while_contexts(self.graph)   # for tf.gradients
        self.feed = self._feeds(feed)
        self.session = tf.compat.v1.Session(graph=self.graph)

    def _map_variables(self, variables, full_nodes):
        """input_map sending every read of a bound variable to its placeholder (a slice
        of it for a partition); a resource handle that ops use directly (ResourceGather,
        a function call) is sent to a fresh resource variable holding the value."""
        import tensorflow as tf

        cons = _consumers_of(self.nodes)
        input_map = {}
        self.handles = {}        # variable name -> [(resource handle, its slice of ph | None)]
        for v in variables:
            reads = [_tensor_name(t) for t in v.read_tensors if _node_name(t) in self.nodes]
            handles = {h for h in _handles(full_nodes, v) if _node_name(h) in self.nodes}
            if not reads and not handles:
                continue
            value = np.asarray(v.value)
            safe = re.sub(r"[^A-Za-z0-9_.\-/]", "_", v.name)
            ph = tf.compat.v1.placeholder(tf.as_dtype(value.dtype), value.shape,
                                          name="varmap_var/" + safe)
            self.var_inputs[v.name] = ph
            self.var_values[v.name] = value
            layout = _PartLayout(self.nodes, cons, reads + sorted(handles), value.shape)
            for t in reads:
                node = self.nodes[_node_name(t)]
                if _read_dtype(node) == tf.resource:
                    handles.add(t)
                    continue
                if node.op == "ReadVariableOp":
                    handles.add(_tensor_name(node.input[0]))
                src = layout.slice(ph, t)
                input_map[t] = src
                self.mapped[t] = src
            for h in sorted(handles):
                users = [n for n, _ in cons.get(_node_name(h), [])
                         if n.op != "ReadVariableOp" or _tensor_name(n.name) not in input_map]
                if not users:
                    continue
                part = layout.slice(ph, h)
                rv = tf.compat.v1.Variable(part, use_resource=True, trainable=False,
                                           name="varmap_res/" + safe)
                input_map[h] = rv.handle
                self.mapped[h] = rv.handle
                self.handles.setdefault(v.name, []).append(
                    (rv.handle, None if part is ph else part))
                calls = [n for n in users if n.op not in _HANDLE_OPS]
                if calls:
                    self.problems[v.name] = (
                        f"the resource handle '{h}' is captured by '{calls[0].name}' "
                        f"({calls[0].op}); gradients through it are not compared")
        return input_map

    def _feeds(self, feed):
        out = {}
        for name, value in feed.items():
            if name in self.nodes:
                out[self.tensor(_tensor_name(name))] = value
        for name, ph in self.var_inputs.items():
            out[ph] = self.var_values[name]
        return out

    def tensor(self, name):
        name = _tensor_name(name)
        if name in self.mapped:
            return self.mapped[name]
        return self.graph.get_tensor_by_name("orig/" + name)

    def init(self):
        import tensorflow as tf

        with self.graph.as_default():
            init = [v.initializer for v in tf.compat.v1.global_variables()
                    if v.name.startswith("varmap_res/")]
        if init:
            self.session.run(init, feed_dict=self.feed)

    def fresh_session(self):
        """A new session over the graph as it is now. Building gradients of a While loop
        adds outputs to the forward loop, which a session that already ran it cannot see."""
        import tensorflow as tf

        self.session.close()
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.init()
        return self.session

    def run(self, names):
        """{name: ndarray | Exception}; one failing tensor does not sink the others."""
        names = list(dict.fromkeys(names))
        try:
            values = self.session.run([self.tensor(n) for n in names], feed_dict=self.feed)
            return dict(zip(names, values))
        except Exception:  # noqa: BLE001
            pass
        out = {}
        for n in names:
            try:
                out[n] = self.session.run(self.tensor(n), feed_dict=self.feed)
            except Exception as e:  # noqa: BLE001
                out[n] = e
        return out


def _read_dtype(node):
    import tensorflow as tf

    if node.op == "VarHandleOp":
        return tf.resource
    for key in ("dtype", "T"):
        if key in node.attr and node.attr[key].type:
            return tf.as_dtype(node.attr[key].type)
    return None


class _PartLayout:
    """Where each partition `…/part_N` of a variable lies in its logical (joined) value:
    contiguous slices along the partition axis, or with a `mod` embedding lookup (ids
    partitioned by a FloorMod) row i of the value in part i % P at row i // P."""

    def __init__(self, nodes, cons, tensors, full_shape):
        self.part = {}
        for t in tensors:
            m = re.search(r"^(.*)/part_(\d+)(/|:|$)", _node_name(t) + ":")
            if m:
                self.part[t] = (int(m.group(2)), m.group(1) + "/part_" + m.group(2))
        nums = sorted({p for p, _ in self.part.values()})
        self.count = len(nums)
        if self.count < 2:
            return
        shapes = {}
        for p, var in self.part.values():
            node = nodes.get(var)
            if node is not None and "shape" in node.attr:
                shapes[p] = [d.size for d in node.attr["shape"].shape.dim]
        self.axis = next((i for i, d in enumerate(full_shape)
                          if any(len(s) > i and s[i] != d for s in shapes.values())), 0)
        sizes = [shapes.get(p, [None] * (self.axis + 1))[self.axis] for p in nums]
        self.offsets = dict(zip(nums, np.cumsum([0] + [s or 0 for s in sizes[:-1]])))
        self.sizes = dict(zip(nums, sizes))
        self.mod = self.axis == 0 and _mod_lookup(nodes, cons, list(self.part))

    def slice(self, full, tensor):
        if self.count < 2 or tensor not in self.part:
            return full
        p = self.part[tensor][0]
        if self.mod:
            return full[p::self.count]
        size = self.sizes[p]
        if size is None:
            raise BadInput(f"partition '{self.part[tensor][1]}': unknown shape, cannot place "
                           "it in the joined variable value")
        index = [slice(None)] * len(full.shape)
        index[self.axis] = slice(int(self.offsets[p]), int(self.offsets[p]) + size)
        return full[tuple(index)]


def _mod_lookup(nodes, cons, tensors):
    """True if the gathers reading these partitions take ids that a DynamicPartition split
    by `id % P` (embedding_lookup's "mod" strategy; "div" splits by a Maximum of FloorDivs,
    though its scope holds a FloorMod too)."""
    found = set()
    todo, seen = [_node_name(t) for t in tensors], set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        for node, slot in cons.get(cur, []):
            if node.op in ("Identity", "ReadVariableOp"):
                todo.append(node.name)
            elif node.op in ("Gather", "GatherV2", "ResourceGather") and slot == 0:
                ids = _producer(nodes, node.input[1])
                if ids is not None and ids.op == "DynamicPartition":
                    assign = _producer(nodes, ids.input[1])
                    found.add(assign is not None and assign.op in ("FloorMod", "Mod"))
    return found == {True}


def _producer(nodes, tensor, skip=("Identity", "Cast")):
    """The node producing `tensor`, looking through Identity and Cast."""
    node = nodes.get(_node_name(tensor))
    while node is not None and node.op in skip and node.input:
        node = nodes.get(_node_name(node.input[0]))
    return node


def _handles(nodes, v):
    """Resource handle tensors behind a binding: inputs of its ReadVariableOps, handle
    tensors it lists, or a VarHandleOp named like the variable."""
    out = set()
    for t in v.read_tensors:
        node = nodes.get(_node_name(t))
        if node is None:
            continue
        if node.op == "ReadVariableOp":
            out.add(_tensor_name(node.input[0]))
        elif _read_dtype(node) is not None and _read_dtype(node).name == "resource":
            out.add(_tensor_name(t))
    node = nodes.get(v.name)
    if node is not None and node.op == "VarHandleOp":
        out.add(_tensor_name(v.name))
    return out


# ---------------------------------------------------------------- keras side

def _call_nodes(model, layers):
    """The Keras call (inbound node) each binding stands for: a layer bound k times (a
    shared layer, e.g. one weight used by several TF ops) maps its j-th binding to its
    j-th call in the model."""
    by_depth = getattr(model, "_nodes_by_depth", None) or {}
    mine = {id(n) for ns in by_depth.values() for n in ns}   # calls in *this* model
    seen, out = {}, []
    for lb in layers:
        j = seen.get(lb.layer, 0)
        seen[lb.layer] = j + 1
        try:
            nodes = [n for n in model.get_layer(lb.layer)._inbound_nodes
                     if n.arguments.keras_tensors and (not mine or id(n) in mine)]
            out.append(nodes[j] if j < len(nodes) else None)
        except ValueError:
            out.append(None)
    return out


def _keras_layer_call(layer, node, values):
    """Call `layer` as `node` calls it, its symbolic inputs replaced by `values`."""
    kts = node.arguments.keras_tensors
    if len(kts) != len(values):
        raise ValueError(f"layer takes {len(kts)} tensor inputs, binding gives "
                         f"{len(values)} tf_inputs")
    args, kwargs = node.arguments.fill_in({id(kt): v for kt, v in zip(kts, values)})
    if "training" in _call_params(layer) and "training" not in kwargs:
        kwargs["training"] = False
    return layer(*args, **kwargs)


def _call_params(layer):
    import inspect

    try:
        return inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return {}


def _flat_np(x):
    import keras

    return [keras.ops.convert_to_numpy(t) for t in keras.tree.flatten(x)]


def _model_feed(model, inputs, feed):
    """Model input values in model.inputs order (contract: order of `inputs`)."""
    if len(model.inputs) != len(inputs):
        raise BadInput(f"model has {len(model.inputs)} inputs, verification was given "
                       f"{len(inputs)}: {list(inputs)}")
    out = []
    for kt, name in zip(model.inputs, inputs):
        value = feed[_node_name(name)]
        dtype = getattr(kt, "dtype", None)
        out.append(np.asarray(value).astype(dtype) if dtype else value)
    return out


def _structured(model, flat):
    """Flat input values packed like model.input (a tensor, list or dict)."""
    import keras

    return keras.tree.pack_sequence_as(model.input, flat)


# ---------------------------------------------------------------- verify

def verify(graph_def, inputs, outputs, variables, conversion, feed=None, *, atol=1e-5,
           rtol=1e-5, seed=0, loss=None, progress=None):
    """Compare the original graph with `conversion.model`; returns report["verification"]."""
    import tensorflow as tf

    say = progress or (lambda fraction, message: None)
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)  # GPU matmuls: ~1e-3 off
    try:
        return _verify(graph_def, inputs, outputs, variables, conversion, feed, atol, rtol,
                       seed, loss, say)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def _verify(graph_def, inputs, outputs, variables, conversion, feed, atol, rtol, seed, loss,
            say):
    from tb_varmap.convert.conds import fold_static_conds

    inputs = [_node_name(i) for i in inputs]
    original = _tf_graph_def(graph_def)
    # the graph the layers come from: fixed conds resolved (checked against the original)
    gd, fold_notes = fold_static_conds(original, inputs)
    outputs = [_tensor_name(o) for o in outputs]
    say(0.0, "preparing inputs")
    if feed is None:
        feed = make_inputs(gd, inputs, variables, seed)
        source = "random"
    else:
        feed = check_feed(feed, gd, inputs)
        source = "feed"
    loss_t = _tensor_name(loss) if loss else None
    layers = list(conversion.layers)
    fetch = list(outputs) + ([loss_t] if loss_t else [])
    for lb in layers:
        fetch += [_tensor_name(t) for t in list(lb.tf_inputs) + list(lb.tf_outputs)]
    fetch_nodes = [_node_name(t) for t in fetch]
    orig = _Original(gd, fetch_nodes, variables, dict(feed))
    try:
        _feed_extra_placeholders(orig, gd, feed, variables, seed)
        orig.init()
        say(0.1, "running the original graph")
        values = orig.run(fetch)

        model = conversion.model
        x = _model_feed(model, inputs, feed)
        report = {"atol": float(atol), "rtol": float(rtol),
                  "inputs": _describe_inputs(feed, source, seed, inputs, orig.extra)}

        say(0.3, "comparing layers in isolation")
        nodes = _call_nodes(model, layers)
        rows = [_isolated(model, lb, node, values, atol, rtol)
                for lb, node in zip(layers, nodes)]
        say(0.5, "comparing layers end to end")
        keras_outs = _cumulative(model, layers, nodes, rows, values, x, atol, rtol)
        report["layers"] = rows
        report["outputs"] = _outputs(outputs, values, keras_outs, atol, rtol)
        say(0.7, "comparing gradients")
        report["gradients"] = _gradients(orig, model, layers, variables, outputs, loss_t, x,
                                         atol, rtol, values, seed,
                                         getattr(conversion, "index_maps", None) or {})
        report["gradient_tolerance"] = ("per variable: atol + rtol * max|original gradient| "
                                        "(each row's `tolerance`)")
        report["gradient_of"] = (f"loss '{loss_t}' (through the outputs)" if loss_t else
                                 f"sum of the outputs weighted by N(0, 1) noise (seed {seed})")
        if gd is not original:
            say(0.95, "checking the resolved conditionals against the original graph")
            report["conditionals"] = _fold_check(original, outputs, variables, feed, values,
                                                 fold_notes, seed)
    finally:
        orig.session.close()
    report["worst"] = _worst(rows)
    stats = ([r["isolated"] for r in rows] + [r["cumulative"] for r in rows]
             + report["outputs"] + report["gradients"]
             + report.get("conditionals", {}).get("outputs", []))
    report["passed"] = all(s["status"] == OK for s in stats)
    say(1.0, "verification " + ("passed" if report["passed"] else "found differences"))
    return report


def _fold_check(original, outputs, variables, feed, values, notes, seed):
    """Conds with a fixed predicate were resolved before conversion (convert.conds) and the
    comparisons above ran on that graph; here the original graph, TF's own cond included,
    must give the same outputs on the same feed (exactly: the same kernels run)."""
    ref = _Original(original, [_node_name(o) for o in outputs], variables, dict(feed))
    try:
        _feed_extra_placeholders(ref, original, feed, variables, seed)
        ref.init()
        got = ref.run(outputs)
    finally:
        ref.session.close()
    rows = []
    for name in outputs:
        row = {"name": name}
        why = _missing(got, [name]) or _missing(values, [name])
        row.update(failed(why) if why else compare(values[name], got[name], 0.0, 0.0))
        rows.append(row)
    return {"resolved": list(notes), "outputs": rows,
            "note": "outputs of the graph with fixed conditionals resolved vs the original "
                    "graph, same feed, atol = rtol = 0"}


def _feed_extra_placeholders(orig, gd, feed, variables, seed):
    """Placeholders the subgraph needs that are not inputs: keep_prob-like scalars -> 1.0,
    bools -> False, the rest random with the inputs' batch (recorded in orig.extra)."""
    rng = np.random.default_rng(seed + 1)
    orig.extra = {}
    batch = next((np.shape(v)[0] for v in feed.values() if np.ndim(v) >= 1), 2)
    for name, node in orig.nodes.items():
        if node.op not in ("Placeholder", "PlaceholderV2") or name in feed:
            continue
        dtype, shape = _placeholder_spec(node)
        if shape is None:
            continue  # left unfed: a fetch that needs it fails with TF's own message
        shape = [batch if d is None and i == 0 else (UNKNOWN_DIM if d is None else d)
                 for i, d in enumerate(shape)]
        if dtype.is_floating and not shape:
            value = np.asarray(1.0, dtype=dtype.as_numpy_dtype)
        else:
            try:
                value = _random_value(gd, name, dtype, shape, variables, rng)
            except BadInput:
                continue
        orig.extra[name] = value
        orig.feed[orig.tensor(_tensor_name(name))] = value


def _describe_inputs(feed, source, seed, inputs, extra):
    """What was fed: source, seed, and per tensor name/shape/dtype/min/max; `extra` marks
    placeholders outside `inputs` that the graph needed (filled in by verify)."""
    out = {"source": source, "tensors": []}
    if source == "random":
        out["seed"] = int(seed)
    given = list(inputs) + [n for n in feed if n not in inputs]     # .npz may add labels
    both = [(n, feed[n], False) for n in given] + [(n, v, True) for n, v in extra.items()]
    for name, v, is_extra in both:
        v = np.asarray(v)
        t = {"name": name, "shape": list(v.shape), "dtype": str(v.dtype)}
        if is_extra:
            t["extra"] = True
        if v.size and v.dtype.kind in "fiub":
            t["min"] = _num(v.min())
            t["max"] = _num(v.max())
        out["tensors"].append(t)
    return out


def _missing(values, names):
    for n in names:
        if isinstance(values.get(n), Exception):
            return f"original tensor '{n}' could not be computed: {_brief(values[n])}"
    return None


def _isolated(model, lb, node, values, atol, rtol):
    ins = [_tensor_name(t) for t in lb.tf_inputs]
    outs = [_tensor_name(t) for t in lb.tf_outputs]
    row = {"layer": lb.layer, "keras_class": lb.keras_class, "tf_outputs": outs}
    why = _missing(values, ins + outs)
    if why:
        row["isolated"] = failed(why)
        return row
    try:
        layer = model.get_layer(lb.layer)
        if node is None:
            raise ValueError(f"the model has no call of layer '{lb.layer}' for this binding")
        got = _flat_np(_keras_layer_call(layer, node, [values[t] for t in ins]))
    except Exception as e:  # noqa: BLE001
        row["isolated"] = failed(f"Keras layer '{lb.layer}' could not run: "
                                 f"{_brief(e)}")
        return row
    row["isolated"] = _compare_all(got, [values[t] for t in outs], outs, atol, rtol)
    return row


def _compare_all(got, want, names, atol, rtol):
    """Merge per-tensor comparisons into one (worst status, max errors)."""
    if len(got) != len(want):
        return failed(f"layer gives {len(got)} outputs, binding names {len(want)} tf_outputs")
    parts = [compare(g, w, atol, rtol) for g, w in zip(got, want)]
    for p, n in zip(parts, names):
        if p["status"] == FAILED:
            p = dict(p)
            p["reason"] = f"{n}: {p['reason']}"
            return p
    merged = {}
    for key in ("max_abs", "max_rel", "mean_abs"):
        nums = [p[key] for p in parts]
        merged[key] = None if None in nums else max(
            (float("inf") if isinstance(v, str) else v for v in nums), default=0.0)
        merged[key] = _num(merged[key]) if merged[key] is not None else None
    merged["status"] = INACCURATE if any(p["status"] != OK for p in parts) else OK
    return merged


def _cumulative(model, layers, nodes, rows, values, x, atol, rtol):
    """Fill rows[i]["cumulative"]; returns the model's own outputs (numpy list) or an error."""
    import keras

    try:
        counts = [0 if n is None else len(n.output_tensors) for n in nodes]
        flat = [t for n in nodes if n is not None for t in n.output_tensors]
        probe = keras.Model(model.input, list(model.outputs) + flat)
        got = _flat_np(probe(_structured(probe, x), training=False))
    except Exception as e:  # noqa: BLE001
        reason = f"the Keras model could not run end to end: {_brief(e)}"
        for row in rows:
            row["cumulative"] = failed(reason)
        try:
            return _flat_np(model(_structured(model, x), training=False))
        except Exception as e2:  # noqa: BLE001
            return e2
    n_out = len(model.outputs)
    model_outs, pos = got[:n_out], n_out
    for row, lb, k, node in zip(rows, layers, counts, nodes):
        outs = [_tensor_name(t) for t in lb.tf_outputs]
        why = _missing(values, outs) or (
            None if node is not None else f"the model has no call of layer '{lb.layer}' "
                                          "for this binding")
        row["cumulative"] = failed(why) if why else _compare_all(
            got[pos:pos + k], [values[t] for t in outs], outs, atol, rtol)
        pos += k
    return model_outs


def _outputs(outputs, values, keras_outs, atol, rtol):
    rows = []
    for i, name in enumerate(outputs):
        row = {"name": name}
        orig = values.get(name)
        if isinstance(keras_outs, Exception):
            row.update(failed(f"the Keras model could not run: {_brief(keras_outs)}"))
        elif isinstance(orig, Exception):
            row.update(failed(f"original tensor '{name}' could not be computed: {_brief(orig)}"))
        elif i >= len(keras_outs):
            row.update(failed(f"the Keras model has {len(keras_outs)} outputs, "
                              f"expected {len(outputs)}"))
        else:
            got = keras_outs[i]
            row.update(compare(got, orig, atol, rtol))
            row["sample"] = {"original": sample(orig), "keras": sample(got)}
            row["error_histogram"] = error_histogram(got, orig)
        rows.append(row)
    return rows


def _weights_by_path(model):
    out = {}
    for w in model.weights:
        out.setdefault(w.path, w)
    return out


def _gradients(orig, model, layers, variables, outputs, loss_t, x, atol, rtol, values, seed,
               index_maps=None):
    """d(scalar)/d(variable), original vs Keras, for every trainable bound variable.

    scalar = sum(output * r) over the float outputs, r seeded N(0, 1) noise (a plain sum
    is constant for a softmax, so its gradients would be 0 on both sides), or with
    `loss` r = the original's d loss / d output, so both sides differentiate the loss
    through the outputs (terms that read variables directly, e.g. weight decay, are left
    out)."""
    import keras
    import tensorflow as tf

    todo = [v for v in variables if v.trainable and v.role not in ("constant", "ignore")]
    if not todo:
        return []
    weights = _weights_by_path(model)
    names = {v.name for v in variables}
    bound = {}
    for lb in layers:
        for item in lb.variables:
            name = item["variable"]
            m = re.match(r"^(.*)/part_\d+$", name)
            if name not in names and m and m.group(1) in names:
                name = m.group(1)             # a partition bound on its own weight
            paths = bound.setdefault(name, [])
            if item["weight"] not in paths:   # a shared layer lists its weight per call
                paths.append(item["weight"])
    rows, want = [], []
    for v in todo:
        if v.name not in orig.var_inputs:
            continue  # not part of the verified subgraph (e.g. a learning-rate variable)
        paths = bound.get(v.name, [])
        missing = [p for p in paths if p not in weights]
        if not paths or missing:
            rows.append(dict(failed(f"no Keras weight for it (bound: {paths}, not in the "
                                    f"model: {missing})"), variable=v.name))
            continue
        frozen = [p for p in paths if not weights[p].trainable]
        if frozen:
            rows.append(dict(failed(f"trainable variable, but Keras weight(s) {frozen} "
                                    "are not trainable"), variable=v.name))
            continue
        if v.name in orig.problems:
            rows.append(dict(failed(orig.problems[v.name]), variable=v.name))
            continue
        rows.append({"variable": v.name})
        want.append((len(rows) - 1, v, paths))
    if not want:
        return rows
    # original side
    float_idx = []
    with orig.graph.as_default():
        ys = []
        for i, name in enumerate(outputs):
            t = orig.tensor(name)
            if t.dtype.is_floating:
                float_idx.append(i)
                ys.append(t)
        if not ys:
            for i, v, _ in want:
                rows[i].update(failed("no float model output to differentiate"))
            return rows
        try:
            if loss_t:
                gys = tf.gradients(orig.tensor(loss_t), ys)
                gys = [tf.zeros_like(y) if g is None else tf.stop_gradient(g)
                       for y, g in zip(ys, gys)]
            else:
                rng = np.random.default_rng(seed + 2)
                gys = []
                for i, y in zip(float_idx, ys):
                    shape = np.shape(values[outputs[i]]) if not isinstance(
                        values.get(outputs[i]), Exception) else ()
                    gys.append(tf.constant(rng.standard_normal(shape), dtype=y.dtype))
            gy_values = orig.session.run(gys, feed_dict=orig.feed)
        except Exception as e:  # noqa: BLE001
            for i, v, _ in want:
                rows[i].update(failed(_grad_reason(orig, "d loss / d outputs", e)))
            return rows
        tf_grads = _original_gradients(orig, [v for _, v, _ in want], ys, gy_values)
    for (i, v, _), g in zip(want, tf_grads):
        if isinstance(g, str):
            rows[i].update(failed(g))
    want = [w for w, g in zip(want, tf_grads) if not isinstance(g, str)]
    tf_grads = [g for g in tf_grads if not isinstance(g, str)]
    if not want:
        return rows
    # keras side
    train = list(dict.fromkeys(p for _, _, paths in want for p in paths))
    try:
        with tf.GradientTape() as tape:
            outs = keras.tree.flatten(model(_structured(model, x), training=False))
            total = tf.add_n([tf.reduce_sum(tf.cast(outs[i], gy.dtype) * gy)
                              for i, gy in zip(float_idx, gy_values)])
        kgrads = tape.gradient(total, [weights[p] for p in train])
    except Exception as e:  # noqa: BLE001
        for i, v, _ in want:
            rows[i].update(failed(f"Keras gradient failed: {_brief(e)}"))
        return rows
    kg = {p: (np.zeros(weights[p].shape, np.float32) if g is None
              else tf.convert_to_tensor(g).numpy())
          for p, g in zip(train, kgrads)}
    unconnected = {p for p, g in zip(train, kgrads) if g is None}
    for (i, v, paths), g_tf in zip(want, tf_grads):
        lost = [p for p in paths if p in unconnected]
        if lost and np.any(np.asarray(g_tf) != 0):
            rows[i].update(failed(
                f"no Keras gradient reaches weight(s) {lost} (the model does not "
                "differentiate through them), while the original gradient is non-zero"))
            continue
        g_k, why = _to_variable_layout(v, paths, weights, kg, index_maps)
        if isinstance(g_k, Grouped):
            g_tf = np.bincount(g_k.groups, weights=np.asarray(g_tf, np.float64).ravel(),
                               minlength=g_k.sums.size)
            rows[i].update(compare_gradient(g_k.sums, g_tf, atol, rtol), note=g_k.NOTE)
            continue
        rows[i].update(failed(why) if why else compare_gradient(g_k, g_tf, atol, rtol))
    return rows


def _original_gradients(orig, todo, ys, gy_values):
    """Per variable: d sum(ys * gy) / d value as an array, or a reason string."""
    import tensorflow as tf

    from tb_varmap.control_flow_v1 import legacy_gradients
    from tb_varmap.tf_gradients import register_missing

    register_missing()
    with orig.graph.as_default(), legacy_gradients(bool(orig.v1_loops)):
        gys = [tf.constant(g, dtype=y.dtype) for y, g in zip(ys, gy_values)]
        pairs = [[(orig.var_inputs[v.name], None)] + orig.handles.get(v.name, [])
                 for v in todo]
        try:  # one backward pass for all variables
            flat = tf.gradients(ys, [h for ps in pairs for h, _ in ps], grad_ys=gys)
            it = iter(flat)
            built = [_assemble(ps, [next(it) for _ in ps]) for ps in pairs]
        except Exception:  # noqa: BLE001  (then one by one, to name the failing ones)
            built = []
            for v, ps in zip(todo, pairs):
                try:
                    found = tf.gradients(ys, [h for h, _ in ps], grad_ys=gys)
                    built.append(_assemble(ps, found))
                except Exception as e:  # noqa: BLE001
                    built.append(_grad_reason(orig, v.name, e))
    ready = [t for t in built if not isinstance(t, str)]
    try:
        values = iter(orig.fresh_session().run(ready, feed_dict=orig.feed))
        return [t if isinstance(t, str) else next(values) for t in built]
    except Exception:  # noqa: BLE001
        pass
    out = []
    for t in built:
        try:
            out.append(t if isinstance(t, str) else orig.session.run(t, feed_dict=orig.feed))
        except Exception as e:  # noqa: BLE001
            out.append(_grad_reason(orig, "", e))
    return out


def _assemble(pairs, found):
    """Sum of a variable's gradients: its placeholder's, plus each resource handle's
    (a partition's placed into the full value by differentiating the slice)."""
    import tensorflow as tf

    ph = pairs[0][0]
    parts = []
    for (h, part), g in zip(pairs, found):
        if g is None:
            continue
        g = tf.convert_to_tensor(g)
        if part is not None:
            g = tf.gradients(part, ph, grad_ys=g)[0]
        parts.append(tf.convert_to_tensor(g))
    return tf.add_n(parts) if parts else tf.zeros_like(ph)


def _grad_reason(orig, what, error):
    loops = sorted(n for n, node in orig.nodes.items() if node.op in ("Enter", "RefEnter"))
    hint = ""
    if loops:
        frame = orig.nodes[loops[0]].attr["frame_name"].s.decode(errors="replace")
        hint = (f" (the graph has a TF1 control-flow loop, frame '{frame}'"
                + ("" if frame in orig.v1_loops else "; its WhileContext could not be "
                   "rebuilt, nested loops are not") + ")")
    what = f" of {what}" if what else ""
    return f"original gradient{what} failed: {_brief(error)}{hint}"


def _to_variable_layout(v, paths, weights, kg, index_maps=None):
    """Keras gradient(s) in the TF variable's layout, or (None, reason).

    With the converter's index maps (conversion.index_maps: per Keras element, the
    variable element it came from) the gradients are scattered back exactly, summed where
    one element feeds several. Same shape and same values: as is. Otherwise the converter
    re-laid the value out
    (split, reordered, transposed, e.g. LSTM gates; maybe with a constant folded in, e.g.
    forget_bias): each Keras element is traced back to the variable element holding its
    value, and its gradient put there. A same-shape weight that cannot be traced back is
    compared as is."""
    value = np.asarray(v.value)
    maps = [(index_maps or {}).get(p, {}).get(v.name) for p in paths]
    if paths and all(m is not None and m.shape == tuple(weights[p].shape)
                     for m, p in zip(maps, paths)):
        out = np.zeros(value.size, dtype=np.float64)
        for m, p in zip(maps, paths):
            hit = m >= 0
            np.add.at(out, m[hit], np.asarray(kg[p], np.float64)[hit])
        return out.reshape(value.shape), None
    kw = [np.asarray(weights[p].numpy()) for p in paths]
    same_shape = len(paths) == 1 and kw[0].shape == value.shape
    if same_shape and np.array_equal(kw[0], value):
        return kg[paths[0]], None
    kvals = np.concatenate([w.reshape(-1) for w in kw]).astype(np.float64)
    kgrad = np.concatenate([kg[p].reshape(-1) for p in paths])
    src = _trace_values(kvals, value.reshape(-1).astype(np.float64))
    if src is not None:
        out = np.zeros(value.size, dtype=kgrad.dtype)
        out[src] = kgrad
        return out.reshape(value.shape), None
    if kvals.size > value.size:  # the weights also hold other variables (GRU)
        pos = _locate(value.reshape(-1).astype(np.float64), kvals)
        if pos is not None:
            return kgrad[pos].reshape(value.shape), None
    grouped = _grouped(value.reshape(-1).astype(np.float64), kvals, kgrad)
    if grouped is not None:
        return grouped, None
    if same_shape:
        return kg[paths[0]], None
    return None, (f"Keras weights {paths} do not hold the variable's values in a layout "
                  f"verify can map back (shape {list(value.shape)}); gradient not compared")


MAX_OFFSET_SEARCH = 4096   # variable size up to which a folded-in constant is searched


def _nearest(ordered, vals):
    """Index into sorted `ordered` of the value nearest to each of `vals`, and whether it
    is equal up to float32 rounding."""
    if ordered.size == 1:
        pick = np.zeros(vals.shape, dtype=np.int64)
    else:
        pos = np.clip(np.searchsorted(ordered, vals), 1, ordered.size - 1)
        left, right = ordered[pos - 1], ordered[pos]
        pick = np.where(np.abs(vals - left) <= np.abs(vals - right), pos - 1, pos)
    tol = 4 * np.finfo(np.float32).eps * np.maximum(1.0, np.abs(vals))
    return pick, np.abs(ordered[pick] - vals) <= tol


def _trace_values(kvals, flat):
    """Index into `flat` of each value in `kvals` (a permutation), allowing one constant
    added to some of them; None when that does not explain the values."""
    if kvals.size != flat.size or np.unique(flat).size != flat.size:
        return None
    order = np.argsort(flat)
    ordered = flat[order]

    def find(vals):
        pick, hit = _nearest(ordered, vals)
        return order[pick], hit

    if flat.size == 1:
        return np.zeros(1, dtype=np.int64) if kvals.size == 1 else None
    src, hit = find(kvals)
    if not hit.all():
        miss = ~hit
        if flat.size > MAX_OFFSET_SEARCH:
            return None
        for c in kvals[miss][0] - flat:          # the constant that explains the first miss
            s2, h2 = find(kvals[miss] - c)
            if h2.all():
                src[miss] = s2
                break
        else:
            return None
    return src if np.unique(src).size == flat.size else None


def _locate(flat, kvals):
    """Index into `kvals` of each value of `flat` (each found once, exactly up to float32
    rounding); None when the values are not unique there or some are missing."""
    if np.unique(kvals).size != kvals.size:
        return None
    order = np.argsort(kvals)
    pick, hit = _nearest(kvals[order], flat)
    if not hit.all():
        return None
    found = order[pick]
    return found if np.unique(found).size == flat.size else None


class Grouped:
    """Gradients summed per distinct value of a variable (see _grouped)."""

    NOTE = ("equal values make the element mapping ambiguous: gradients compared summed "
            "per distinct value")

    def __init__(self, sums, groups):
        self.sums, self.groups = sums, groups


def _grouped(flat, kvals, kgrad):
    """When equal values make the element mapping ambiguous: for each distinct value of
    the variable, the Keras gradient summed over the positions holding that value, which
    must be as many as the variable's. None when the counts do not match.
    Each Keras value goes to the nearest distinct value: a copy lands on its own even
    where other values lie closer than float32 rounding (thousands do in a [256, 512]
    kernel, so a window of +-rounding around each value would count its neighbours)."""
    values, groups, counts = np.unique(flat, return_inverse=True, return_counts=True)
    pick, hit = _nearest(values, kvals)
    if not hit.all() or not np.array_equal(np.bincount(pick, minlength=values.size), counts):
        return None
    sums = np.bincount(pick, weights=kgrad.astype(np.float64), minlength=values.size)
    return Grouped(sums, groups.ravel())


def _worst(rows, n=WORST):
    def key(r):
        s = r["isolated"]
        rank = {FAILED: 2, INACCURATE: 1, OK: 0}[s["status"]]
        m = s["max_abs"]
        m = float("inf") if isinstance(m, str) else (m or 0.0)
        return (rank, m)

    ranked = sorted(rows, key=key, reverse=True)[:n]
    return [{"layer": r["layer"], "tf_outputs": r["tf_outputs"],
             "status": r["isolated"]["status"],
             "max_abs": r["isolated"]["max_abs"],
             "cumulative_max_abs": r["cumulative"]["max_abs"]} for r in ranked]
