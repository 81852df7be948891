"""Variables: graph variable nodes ↔ checkpoint keys, kinds, partitions, trainable flags.

Links by node name (== checkpoint key normally), or through the Saver's `SaveV2` /
`SaveSlices` ops (`tensor_names` + `shape_and_slices` consts) when names differ or a
variable is partitioned. Partitions `name/part_K` become one logical variable.
"""
import re
from dataclasses import asdict, dataclass, field

from tb_varmap.ir import PASS_THROUGH, VARIABLE_OPS, no_gc, scalar_value

SLOT_NAMES = re.compile(
    r"^(Adam|AdamW|Nadam|Momentum|RMSProp|Adagrad|AdagradDA|ProximalAdagrad|Ftrl|Adadelta|"
    r"LazyAdam|LAMB|accumulator|gradient_accumulator|gradient_squared_accumulator|"
    r"momentum|rms|mg|m|v)(_\d+)?$"
)
COUNTER_NAMES = re.compile(r"^(global_step|beta1_power|beta2_power|iter|iterations|step|counter)(_\d+)?$")
EMA_PART = "ExponentialMovingAverage"
_PART = re.compile(r"^(.*)/part_(\d+)$")
_SAVE_OPS = {"SaveV2": 3, "SaveSlices": 3, "Save": 2}


@dataclass
class VariableInfo:
    name: str  # logical name: checkpoint key without /part_N
    node: str  # graph node of the variable (first partition); "" when not in the graph
    nodes: list  # all variable nodes, part_0..N
    checkpoint_keys: list  # keys in the checkpoint; [] if absent
    shape: list | None  # full logical shape
    dtype: str
    kind: str  # weight | optimizer_slot | ema | counter
    trainable: bool
    read_tensors: list  # tensors through which the value enters the computation
    in_graph: bool
    in_checkpoint: bool
    partition_axis: int | None = None
    # extras beyond ARCHITECTURE.md
    partition_sizes: list = field(default_factory=list)  # rows of each partition along the axis
    partition_strategy: str | None = None  # "mod" | "div" for embedding lookups; None otherwise
    resource: bool = False  # VarHandleOp (True) or ref VariableV2 (False)

    def to_dict(self):
        return asdict(self)


def save_map(ir):
    """{variable node name: (checkpoint key, slice spec)} from the graph's save ops."""
    found = {}
    for node in ir.node_list:
        first = _SAVE_OPS.get(node.op)
        if first is None or len(node.inputs) < first:
            continue
        names = _string_list(ir, node.inputs[1])
        slices = _string_list(ir, node.inputs[2]) if node.op != "Save" else None
        tensors = node.inputs[first:]
        if names is None or len(names) != len(tensors):
            continue
        for k, src in enumerate(tensors):
            var = _variable_behind(ir, src)
            if var is not None:
                spec = slices[k] if slices and k < len(slices) else ""
                found[ir.node_list[var].name] = (names[k], spec)
    return found


def _string_list(ir, index):
    node = ir.node_list[index]
    if node.op != "Const" or "value" not in node.attr:
        return None
    return [s.decode("utf-8", "replace") for s in node.attr["value"].tensor.string_val]


def _variable_behind(ir, index, depth=0):
    """The variable node a saved tensor comes from (through Identity / ReadVariableOp)."""
    node = ir.node_list[index]
    if node.op in VARIABLE_OPS:
        return index
    if depth < 4 and node.op in PASS_THROUGH and node.inputs:
        return _variable_behind(ir, node.inputs[0], depth + 1)
    return None


def parse_slice(spec):
    """'10 4 0,5:0,4' → (full shape [10, 4], [(start, length) or None per axis]);
    (None, None) for an empty or malformed spec."""
    parts = spec.split()
    if len(parts) < 2:
        return None, None
    try:
        dims = [int(p) for p in parts[:-1]]
        ranges = []
        for piece in parts[-1].split(":"):
            if piece == "-":
                ranges.append(None)
            else:
                start, length = piece.split(",")
                ranges.append((int(start), int(length)))
    except ValueError:
        return None, None
    return dims, ranges


def variable_shape(node):
    shape = node.attr["shape"].shape if "shape" in node.attr else None
    if shape is None or shape.unknown_rank:
        return None
    return [d.size for d in shape.dim]


def variable_dtype(node):
    from tb_varmap.ir import _dtype_name

    if "dtype" not in node.attr:
        return "float32"
    return _dtype_name(node.attr["dtype"].type).replace("_ref", "")


def meta_variables(meta):
    """(all variable node names, trainable node names) from MetaGraphDef collections, or (None, None)."""
    if meta is None:
        return None, None
    from tensorboard.compat.proto import variable_pb2

    out = []
    for key in ("variables", "trainable_variables"):
        names = None
        if key in meta.collection_def:
            names = set()
            col = meta.collection_def[key]
            for raw in col.bytes_list.value:
                vdef = variable_pb2.VariableDef()
                try:
                    vdef.ParseFromString(raw)
                except Exception:
                    continue
                names.add(vdef.variable_name.split(":")[0])
                if vdef.HasField("save_slice_info_def"):
                    names.add(vdef.save_slice_info_def.full_name)
        out.append(names)
    return out[0], out[1]


def classify(name, dtype, shape, all_names=()):
    """Kind of a variable from its name: weight | optimizer_slot | ema | counter."""
    parts = name.split("/")
    if EMA_PART in parts or name.endswith(EMA_PART):
        return "ema"
    last = parts[-1]
    if COUNTER_NAMES.match(last) and (shape in ([], None) or len(parts) == 1):
        return "counter"
    if len(parts) > 1 and SLOT_NAMES.match(last):
        owner = "/".join(parts[:-1])
        if owner in all_names or re.match(r"^(Adam|AdamW|Momentum|RMSProp|Adagrad|Ftrl|Adadelta)(_\d+)?$", last):
            return "optimizer_slot"
    if dtype and dtype.startswith(("int", "uint")) and shape == []:
        return "counter"
    return "weight"


def _read_tensors(ir, var_index, resource, mach):
    """Tensors through which a variable's value enters the non-machinery computation."""
    node = ir.node_list[var_index]
    reads, direct = [], False
    for j, _ in ir.consumers[var_index]:
        user = ir.node_list[j]
        if mach[j]:
            continue
        if user.op == "ReadVariableOp" or (not resource and user.op == "Identity"):
            if any(not mach[k] for k, _ in ir.consumers[j]):  # a read nobody uses is no read
                reads.append(user.name + ":0")
        else:
            direct = True
    if direct:
        reads.append(node.name + ":0")
    return reads


def _optimized(ir, mach):
    """Variable node indices updated at slot 0 of an optimizer Apply op (→ trainable)."""
    found = set()
    for node in ir.node_list:
        if node.op.startswith(("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply")) and node.inputs:
            var = _variable_behind(ir, node.inputs[0])
            if var is not None:
                found.add(var)
    return found


def partition_strategy(ir, part_nodes):
    """'mod' or 'div' when the partitions feed an embedding lookup, else None.

    embedding_lookup routes ids with DynamicPartition(ids, p_assignments): `mod` computes
    p_assignments = ids % P (a FloorMod), `div` a Maximum/Select of floor-divisions.
    """
    for name in part_nodes:
        node = ir.nodes.get(name)
        if node is None:
            continue
        users, _ = ir.passthrough_users([node.index])
        for j, slot in users:
            gather = ir.node_list[j]
            if slot != 0 or gather.op not in ("GatherV2", "Gather", "ResourceGather") or len(gather.inputs) < 2:
                continue
            split = _skip(ir, gather.inputs[1])
            if split.op != "DynamicPartition" or len(split.inputs) < 2:
                continue
            assign = _skip(ir, split.inputs[1])
            return "mod" if assign.op in ("FloorMod", "Mod") else "div"
    return None


def _skip(ir, index):
    node = ir.node_list[index]
    for _ in range(6):
        if node.op not in PASS_THROUGH or not node.inputs:
            break
        node = ir.node_list[node.inputs[0]]
    return node


def link_variables(ir, ckpt_shapes=None, ckpt_dtypes=None, meta=None):
    """VariableInfo list for a run. ir may be None (checkpoint only); ckpt_* may be None (graph only)."""
    with no_gc():
        return _link(ir, ckpt_shapes, ckpt_dtypes, meta)


def _link(ir, ckpt_shapes, ckpt_dtypes, meta):
    ckpt_shapes = ckpt_shapes or {}
    ckpt_dtypes = ckpt_dtypes or {}
    groups = {}  # logical name -> list of (part index, node, key, slice spec)
    order = []
    mach = ir.machinery if ir is not None else []
    saved = save_map(ir) if ir is not None else {}
    if ir is not None:
        for node in ir.node_list:
            if node.op not in VARIABLE_OPS:
                continue
            key, spec = saved.get(node.name, (node.name, ""))
            match = _PART.match(node.name)
            if spec:
                logical, part = key, int(match.group(2)) if match else 0
            elif match:
                logical, part = match.group(1), int(match.group(2))
            else:
                logical, part = key, 0
            if logical not in groups:
                groups[logical] = []
                order.append(logical)
            groups[logical].append((part, node, key, spec))
    all_meta, trainable_meta = meta_variables(meta)
    optimized = _optimized(ir, mach) if ir is not None else set()
    has_optimizer = bool(optimized)
    names_all = set(order) | set(ckpt_shapes)
    claimed = set()
    infos = []
    for logical in order:
        parts = sorted(groups[logical], key=lambda p: p[0])
        nodes = [p[1] for p in parts]
        resource = nodes[0].op == "VarHandleOp"
        keys = _checkpoint_keys(logical, parts, ckpt_shapes)
        claimed.update(keys)
        shape, axis, sizes = _logical_shape(logical, parts, ckpt_shapes)
        dtype = ckpt_dtypes.get(keys[0]) if keys else None
        dtype = dtype or variable_dtype(nodes[0])
        kind = classify(logical, dtype, shape, names_all)
        reads = []
        for n in nodes:
            reads += _read_tensors(ir, n.index, resource, mach)
        if trainable_meta is not None:
            trainable = any(n.name in trainable_meta for n in nodes) or logical in trainable_meta
        elif has_optimizer:
            trainable = any(n.index in optimized for n in nodes)
        else:
            trainable = kind == "weight" and dtype.startswith(("float", "bfloat", "half")) and not re.search(
                r"moving_(mean|variance)$", logical)
        strategy = partition_strategy(ir, [n.name for n in nodes]) if len(nodes) > 1 else None
        infos.append(VariableInfo(
            name=logical, node=nodes[0].name, nodes=[n.name for n in nodes], checkpoint_keys=keys,
            shape=shape, dtype=dtype, kind=kind, trainable=bool(trainable and kind == "weight"),
            read_tensors=reads, in_graph=True, in_checkpoint=bool(keys), partition_axis=axis,
            partition_sizes=sizes, partition_strategy=strategy, resource=resource,
        ))
    for key in sorted(ckpt_shapes):
        if key in claimed or _is_part_of_claimed(key, claimed):
            continue
        shape = list(ckpt_shapes[key])
        dtype = ckpt_dtypes.get(key, "float32")
        kind = classify(key, dtype, shape, names_all)
        trainable = (key in trainable_meta) if trainable_meta is not None else (
            kind == "weight" and dtype.startswith("float") and not re.search(r"moving_(mean|variance)$", key))
        infos.append(VariableInfo(
            name=key, node="", nodes=[], checkpoint_keys=[key], shape=shape, dtype=dtype, kind=kind,
            trainable=bool(trainable and kind == "weight"), read_tensors=[], in_graph=False,
            in_checkpoint=True,
        ))
    return infos


def _is_part_of_claimed(key, claimed):
    match = _PART.match(key)
    return bool(match) and match.group(1) in claimed


def _checkpoint_keys(logical, parts, ckpt_shapes):
    if logical in ckpt_shapes:
        return [logical]
    keys = [p[2] for p in parts if p[2] in ckpt_shapes]
    if len(keys) == len(parts):
        return keys
    keys = [p[1].name for p in parts if p[1].name in ckpt_shapes]
    return keys if len(keys) == len(parts) else []


def _logical_shape(logical, parts, ckpt_shapes):
    """(full shape, partition axis, partition sizes)."""
    part_shapes = [variable_shape(p[1]) for p in parts]
    if len(parts) == 1 and not parts[0][3]:
        shape = ckpt_shapes.get(logical) or ckpt_shapes.get(parts[0][2]) or part_shapes[0]
        return (list(shape) if shape is not None else None), None, []
    axis, sizes, full = 0, [], None
    for part, node, key, spec in parts:
        dims, ranges = parse_slice(spec) if spec else (None, None)
        if dims is not None:
            full = dims
            for a, r in enumerate(ranges):
                if r is not None and r[1] != dims[a]:
                    axis = a
    if full is None and all(s is not None for s in part_shapes):
        # no slice spec: the axis where the parts differ (the first one when all are equal)
        axis = next((a for a in range(len(part_shapes[0])) if len({s[a] for s in part_shapes}) > 1), 0)
        full = list(part_shapes[0])
        if full:
            full[axis] = sum(s[axis] for s in part_shapes)
    if logical in ckpt_shapes:
        full = list(ckpt_shapes[logical])
    sizes = [s[axis] if s is not None and len(s) > axis else None for s in part_shapes]
    return full, axis, sizes


def join_partitions(info, values):
    """Full value of a partitioned variable from per-partition arrays (or one stored array).

    The checkpoint (and the concatenation of the parts) holds contiguous slices; with a
    `mod` embedding lookup id i lives in part i % P at row i // P, which is re-permuted here.
    """
    import numpy as np

    axis = info.partition_axis or 0
    full = values[0] if len(values) == 1 else np.concatenate(values, axis=axis)
    if info.partition_strategy == "mod" and len(info.nodes) > 1 and axis == 0:
        sizes = info.partition_sizes
        if not sizes or any(s is None for s in sizes) or sum(sizes) != full.shape[0]:
            return full
        count, offsets = len(sizes), np.cumsum([0] + list(sizes[:-1]))
        ids = np.arange(full.shape[0])
        full = full[offsets[ids % count] + ids // count]
    return full


def const_value(ir, name):
    """Value of a scalar Const node (helper for callers reading e.g. forget_bias)."""
    node = ir.nodes.get(name)
    if node is None or node.op != "Const":
        return None
    return scalar_value(node.attr["value"].tensor)
