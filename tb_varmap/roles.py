"""Role vocabulary, shape checks and role inference from how the graph uses a variable.

Inference follows each read of a variable (Identity / Cast / ReadVariableOp / Enter chains,
and into library functions of call / While / If ops) to the ops that consume it, and maps
(op, input slot, neighbours) to a role. Names are only a fallback hint (lower confidence).
"""
import re
from dataclasses import dataclass, field

from tb_varmap.ir import PASS_THROUGH, scalar_value


@dataclass(frozen=True)
class RoleSpec:
    name: str
    ranks: tuple | None
    description: str
    trainable: bool = True


def _spec(name, ranks, description, trainable=True):
    return name, RoleSpec(name, ranks, description, trainable)


ROLES = dict([
    _spec("dense.kernel", (2,), "Dense kernel [in, out]"),
    _spec("dense.bias", (1,), "Dense bias [out]"),
    _spec("conv.kernel", (4,), "Conv2D kernel HWIO [kh, kw, in, out]"),
    _spec("conv.bias", (1,), "bias added after a Conv2D / depthwise conv [out]"),
    _spec("conv_transpose.kernel", (4,), "Conv2DTranspose kernel [kh, kw, out, in]"),
    _spec("conv_transpose.bias", (1,), "bias added after a Conv2DTranspose [out]"),
    _spec("depthwise.kernel", (4,), "DepthwiseConv2D kernel [kh, kw, in, multiplier]"),
    _spec("separable.depthwise", (4,), "SeparableConv2D depthwise kernel [kh, kw, in, multiplier]"),
    _spec("depthwise.bias", (1,), "bias added after a DepthwiseConv2D [in*multiplier]"),
    _spec("separable.pointwise", (4,), "SeparableConv2D pointwise kernel [1, 1, in*mult, out]"),
    _spec("separable.bias", (1,), "bias added after a SeparableConv2D [out]"),
    _spec("bn.gamma", (1,), "BatchNormalization scale [C]"),
    _spec("bn.beta", (1,), "BatchNormalization offset [C]"),
    _spec("bn.moving_mean", (1,), "BatchNormalization moving mean [C]", False),
    _spec("bn.moving_variance", (1,), "BatchNormalization moving variance [C]", False),
    _spec("ln.gamma", None, "LayerNormalization scale (normalized axes)"),
    _spec("ln.beta", None, "LayerNormalization offset (normalized axes)"),
    _spec("embedding.table", (2,), "Embedding table [vocab, dim]"),
    _spec("lstm.kernel", (2,), "LSTM cell kernel [in+units, 4*units], gates i, j, f, o"),
    _spec("lstm.bias", (1,), "LSTM cell bias [4*units]"),
    _spec("gru.gates_kernel", (2,), "GRU gates kernel [in+units, 2*units], r then u"),
    _spec("gru.gates_bias", (1,), "GRU gates bias [2*units]"),
    _spec("gru.candidate_kernel", (2,), "GRU candidate kernel [in+units, units]"),
    _spec("gru.candidate_bias", (1,), "GRU candidate bias [units]"),
    _spec("custom.param", None, "any other parameter: a trainable weight of a custom layer"),
    _spec("constant", None, "folded into the model as a constant, not trainable", False),
    _spec("ignore", None, "not exported (optimizer slots, counters, EMA shadows)", False),
])


def check_role_shape(role, shape):
    """None if `shape` fits `role`, else a message saying what the role needs."""
    spec = ROLES.get(role)
    if spec is None:
        return "unknown role %r (known: %s)" % (role, ", ".join(sorted(ROLES)))
    if spec.ranks is None:
        return None
    if shape is None:
        return None  # unknown shape: cannot contradict
    if len(shape) not in spec.ranks:
        need = " or ".join(str(r) for r in spec.ranks)
        return "role %r needs rank %s, variable has shape %s" % (role, need, list(shape))
    if role in ("lstm.kernel", "lstm.bias") and shape[-1] % 4:
        return "role %r needs a last dimension divisible by 4 (gates i, j, f, o), got %s" % (role, list(shape))
    if role in ("gru.gates_kernel", "gru.gates_bias") and shape[-1] % 2:
        return "role %r needs an even last dimension (gates r, u), got %s" % (role, list(shape))
    if role == "separable.pointwise" and list(shape[:2]) != [1, 1]:
        return "role %r needs a 1x1 kernel [1, 1, in, out], got %s" % (role, list(shape))
    return None


@dataclass
class RoleGuess:
    role: str | None
    confidence: float
    reason: str
    consumers: list = field(default_factory=list)
    layer: str | None = None
    partition_strategy: str | None = None  # extra: "mod"/"div" for partitioned embeddings

    def to_dict(self):
        return {"role": self.role, "confidence": self.confidence, "reason": self.reason,
                "consumers": list(self.consumers), "layer": self.layer}


# -- following values ----------------------------------------------------------------
class Use:
    """One op consuming a variable's value: body (graph or function), node, slot."""

    __slots__ = ("body", "node", "slot", "path")

    def __init__(self, body, node, slot, path):
        self.body, self.node, self.slot, self.path = body, node, slot, path


def uses_of(ir, info, depth=3):
    """Non-pass-through, non-machinery uses of a variable, into function bodies too."""
    starts = []
    for tensor in info.read_tensors:
        node = ir.nodes.get(tensor.split(":")[0])
        if node is not None:
            starts.append(node.index)
    mach = ir.machinery
    found = []
    _collect(ir, ir, starts, mach, found, depth, "")
    return found


def _collect(ir, body, starts, mach, found, depth, path):
    users, _ = body.passthrough_users(starts)
    for j, slot in users:
        if body is ir and mach[j]:
            continue
        node = body.node_list[j]
        calls = ir.calls(node) if depth > 0 else []
        if calls:
            for fn, first in calls:
                arg = slot - first
                if 0 <= arg < len(fn.args):
                    _collect(ir, fn, [fn.nodes[fn.args[arg]].index], [], found, depth - 1,
                             path + fn.name + "/")
            continue
        found.append(Use(body, node, slot, path))


def producer(body, node, slot, skip=PASS_THROUGH):
    """The op producing input `slot` of `node`, skipping pass-through ops."""
    if slot >= len(node.inputs):
        return None
    src = body.node_list[node.inputs[slot]]
    hops = 0
    while src.op in skip and src.inputs and hops < 8:
        src = body.node_list[src.inputs[0]]
        hops += 1
    return src


def users(body, node):
    """[(op node, slot)] consuming `node`, skipping pass-through ops."""
    found, _ = body.passthrough_users([node.index])
    return [(body.node_list[j], s) for j, s in found]


def _other_input(body, node, slot):
    return producer(body, node, 1 - slot) if len(node.inputs) == 2 else None


def _flag(node, name):
    return name in node.attr and node.attr[name].b


def _layer(use):
    scope = use.node.scope
    return use.path + scope if scope else use.path + use.node.name


# -- names --------------------------------------------------------------------------
_NAME_HINTS = [
    (re.compile(r"(^|/)(gamma|scale)$"), "bn.gamma"),
    (re.compile(r"(^|/)(beta|offset)$"), "bn.beta"),
    (re.compile(r"(^|/)moving_mean$"), "bn.moving_mean"),
    (re.compile(r"(^|/)moving_variance$"), "bn.moving_variance"),
    (re.compile(r"(^|/)(embeddings?|embedding_weights|word_embeddings|emb)$", re.I), "embedding.table"),
    (re.compile(r"(^|/)(depthwise_kernel|depthwise_weights)$"), "depthwise.kernel"),
    (re.compile(r"(^|/)(pointwise_kernel|pointwise_weights)$"), "separable.pointwise"),
]
_KERNEL = re.compile(r"(^|/)(kernel|weights?|W|w|Matrix|filter|filters)(_\d+)?$")
_BIAS = re.compile(r"(^|/)(bias|biases|b|Bias)(_\d+)?$")


def name_hint(info):
    """(role, reason) from the variable name and rank alone, or (None, reason)."""
    name, rank = info.name, len(info.shape) if info.shape is not None else None
    layer_norm = re.search(r"layer_?norm|LayerNorm", name, re.I)
    for pattern, role in _NAME_HINTS:
        if pattern.search(name):
            if layer_norm and role in ("bn.gamma", "bn.beta"):
                role = "ln." + role.split(".")[1]
            return role, "name hint %r" % name.rpartition("/")[2]
    lstm = re.search(r"lstm", name, re.I)
    if _KERNEL.search(name):
        if lstm and rank == 2:
            return "lstm.kernel", "name hint (LSTM kernel)"
        if rank == 2:
            return "dense.kernel", "name hint %r, rank 2" % name.rpartition("/")[2]
        if rank == 4:
            return "conv.kernel", "name hint %r, rank 4" % name.rpartition("/")[2]
    if _BIAS.search(name) and rank == 1:
        if lstm:
            return "lstm.bias", "name hint (LSTM bias)"
        return "dense.bias", "name hint %r, rank 1" % name.rpartition("/")[2]
    return None, "no use in the graph and no name hint"


# -- inference ----------------------------------------------------------------------
_BN_FUSED = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
_BN_SLOTS = {1: "bn.gamma", 2: "bn.beta", 3: "bn.moving_mean", 4: "bn.moving_variance"}
_GATHER = {"GatherV2", "Gather", "ResourceGather", "ResourceGatherNd", "GatherNd", "SparseSegmentSum",
           "SparseSegmentMean", "SparseSegmentSqrtN"}
_ADD = {"BiasAdd", "Add", "AddV2", "BiasAddV1"}
# LSTMBlockFusedCell / LSTMBlockCell ops: offset of input w; w, wci, wcf, wco, b follow
_LSTM_BLOCK = {"BlockLSTM": 4, "LSTMBlockCell": 3}
_LSTM_BLOCK_SLOTS = {0: "lstm.kernel", 1: "custom.param", 2: "custom.param", 3: "custom.param",
                     4: "lstm.bias"}
_GRU_BLOCK_SLOTS = {2: "gru.gates_kernel", 3: "gru.candidate_kernel", 4: "gru.gates_bias",
                    5: "gru.candidate_bias"}          # contrib GRUBlockCell inputs
_CONV_FAMILY = {"Conv2D": "conv", "DepthwiseConv2dNative": "conv", "Conv2DBackpropInput": "conv_transpose"}
_ELEMENTWISE = {"Mul", "Add", "AddV2", "Sub", "RealDiv", "Div", "Maximum", "Minimum", "Pow", "BiasAdd",
                "SquaredDifference", "FloorDiv", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Square",
                "Sqrt", "Rsqrt", "Softplus", "Abs"}


def infer_roles(ir, variables):
    """{VariableInfo.name: RoleGuess} for every variable."""
    guesses = {}
    forward = ir.forward_set() if ir is not None else set()
    kernels = {}  # MatMul/conv node (body id, name) -> (role family, layer)
    pending_bias = []
    for info in variables:
        if info.kind != "weight":
            guesses[info.name] = RoleGuess("ignore", 1.0, "%s, not a model weight" % info.kind.replace("_", " "))
            continue
        if ir is not None and info.in_graph and not info.read_tensors:
            guesses[info.name] = RoleGuess("ignore", 0.6, "only training machinery uses it (no read in the model)")
            continue
        if ir is None or not info.read_tensors:
            role, reason = name_hint(info)
            guesses[info.name] = RoleGuess(role, 0.3 if role else 0.0,
                                           reason + ("" if info.in_graph else " (not in the graph)"))
            continue
        uses = uses_of(ir, info)
        uses.sort(key=lambda u: u.body is not ir or u.node.index not in forward)  # forward first
        if not uses:
            role, reason = name_hint(info)
            guesses[info.name] = RoleGuess(role or "ignore", 0.3 if role else 0.5,
                                           reason if role else "used only by training machinery")
            continue
        guess = _guess_from_uses(ir, info, uses, kernels)
        if guess is None:
            pending_bias.append((info, uses))
            continue
        guess.partition_strategy = info.partition_strategy
        guesses[info.name] = guess
    for info, uses in pending_bias:  # biases: after the kernels they follow are known
        guesses[info.name] = _guess_bias(ir, info, uses, kernels)
    return guesses


def _guess_from_uses(ir, info, uses, kernels):
    """RoleGuess from structural rules, or None for an add-after-op (decided once kernels are known)."""
    consumers = sorted({u.path + u.node.name for u in uses})
    for use in uses:
        op, slot, body, node = use.node.op, use.slot, use.body, use.node
        layer = _layer(use)
        if op in ("MatMul", "BatchMatMulV2", "BatchMatMul") and slot == 1:
            role, reason = _matmul_role(body, node, info)
            if _flag(node, "transpose_b") or _flag(node, "adj_y"):
                reason += " (transpose_b: stored [out, in])"
            kernels[(id(body), node.name)] = (role, layer)
            return RoleGuess(role, 0.95 if role == "dense.kernel" else 0.85, reason, consumers, layer)
        if op == "Conv2D" and slot == 1:
            pointwise = _pointwise_after_depthwise(body, node)
            role = "separable.pointwise" if pointwise else "conv.kernel"
            kernels[(id(body), node.name)] = (role, layer)
            return RoleGuess(role, 0.95 if not pointwise else 0.9,
                             "Conv2D input 1" + (" after a depthwise conv (1x1)" if pointwise else ""),
                             consumers, layer)
        if op == "DepthwiseConv2dNative" and slot == 1:
            sep = _depthwise_feeds_pointwise(body, node)
            role = "separable.depthwise" if sep else "depthwise.kernel"
            if sep:
                layer = use.path + (sep.scope or sep.name)
            kernels[(id(body), node.name)] = (role, layer)
            return RoleGuess(role, 0.9, "DepthwiseConv2dNative input 1" + (
                " feeding a 1x1 Conv2D" if sep else ""), consumers, layer)
        if op == "Conv2DBackpropInput" and slot == 1:
            kernels[(id(body), node.name)] = ("conv_transpose.kernel", layer)
            return RoleGuess("conv_transpose.kernel", 0.95, "Conv2DBackpropInput input 1", consumers, layer)
        if op in _BN_FUSED and slot in _BN_SLOTS:
            return RoleGuess(_BN_SLOTS[slot], 0.95, "%s input %d" % (op, slot), consumers, layer)
        if op == "GRUBlockCell" and slot in _GRU_BLOCK_SLOTS:
            return RoleGuess(_GRU_BLOCK_SLOTS[slot], 0.95, "GRUBlockCell input %d" % slot,
                             consumers, layer)
        if op in _LSTM_BLOCK and slot - _LSTM_BLOCK[op] in _LSTM_BLOCK_SLOTS:
            role = _LSTM_BLOCK_SLOTS[slot - _LSTM_BLOCK[op]]
            return RoleGuess(role, 0.95, "%s input %d" % (op, slot), consumers, layer)
        if op in _GATHER and slot == 0:
            return RoleGuess("embedding.table", 0.95, "%s input 0 (lookup table)" % op, consumers,
                             _embedding_layer(info, use), info.partition_strategy)
    # unfused batch/layer norm
    for use in uses:
        role = _unfused_norm_role(use)
        if role:
            return RoleGuess(role[0], 0.8, role[1], consumers, _norm_layer(use))
    for use in uses:
        if use.node.op in _ADD and _other_input(use.body, use.node, use.slot) is not None:
            other = _other_input(use.body, use.node, use.slot)
            if other.op in ("MatMul", "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "BatchMatMulV2"):
                return None
    # anything else: a parameter used elementwise / by an unknown op
    use = uses[0]
    hint, hint_reason = name_hint(info)
    ops = sorted({u.node.op for u in uses})
    if hint in ("bn.moving_mean", "bn.moving_variance"):
        return RoleGuess(hint, 0.5, hint_reason + "; used by " + ", ".join(ops), consumers, _layer(use))
    return RoleGuess("custom.param", 0.6, "used by %s input %d (no standard layer)" % (use.node.op, use.slot),
                     consumers, _layer(use))


def _guess_bias(ir, info, uses, kernels):
    consumers = sorted({u.path + u.node.name for u in uses})
    for use in uses:
        other = _other_input(use.body, use.node, use.slot)
        if other is None:
            continue
        family = kernels.get((id(use.body), other.name))
        layer = family[1] if family else _layer(use)
        kind = family[0] if family else None
        if other.op in ("MatMul", "BatchMatMulV2"):
            if kind == "lstm.kernel":
                return RoleGuess("lstm.bias", 0.85, "%s after an LSTM kernel MatMul" % use.node.op, consumers, layer)
            if kind and kind.startswith("gru."):
                role = "gru.gates_bias" if kind == "gru.gates_kernel" else "gru.candidate_bias"
                return RoleGuess(role, 0.85, "%s after a GRU MatMul" % use.node.op, consumers, layer)
            return RoleGuess("dense.bias", 0.9, "%s after MatMul" % use.node.op, consumers, layer)
        if other.op == "Conv2DBackpropInput":
            return RoleGuess("conv_transpose.bias", 0.9, "%s after Conv2DBackpropInput" % use.node.op,
                             consumers, layer)
        if other.op in ("Conv2D", "DepthwiseConv2dNative"):
            role = {"separable.pointwise": "separable.bias", "depthwise.kernel": "depthwise.bias"}.get(
                kind, "conv.bias")
            return RoleGuess(role, 0.9, "%s after %s" % (use.node.op, other.op), consumers, layer)
    return RoleGuess("custom.param", 0.5, "added to an op output", consumers, _layer(uses[0]))


def _matmul_role(body, node, info):
    """dense.kernel, or an RNN cell kernel when the MatMul sits in a cell that splits gates."""
    shape = info.shape or []
    after = _after_bias(body, node)
    nxt = users(body, after)
    nxt += [pair for n, _ in nxt if n.op in ("Sigmoid", "Tanh") for pair in users(body, n)]
    splits = [n for n, _ in nxt if n.op in ("Split", "SplitV")]
    name = (info.name + "/" + node.name).lower()
    if splits and len(shape) == 2:
        n_split = _split_count(body, splits[0])
        if n_split == 4 and shape[1] % 4 == 0:
            return "lstm.kernel", "MatMul input 1, output split into 4 gates (LSTM cell)"
        if n_split == 2 and shape[1] % 2 == 0:
            return "gru.gates_kernel", "MatMul input 1, output split into 2 gates (GRU cell)"
    if len(shape) == 2 and _reset_gated_input(body, node):
        return "gru.candidate_kernel", "MatMul input 1 on [x, r*h] with r from a sigmoid gate split (GRU candidate)"
    if "gru" in name and len(shape) == 2:
        if "candidate" in name:
            return "gru.candidate_kernel", "MatMul input 1 in a GRU cell 'candidate' scope"
        if "gates" in name:
            return "gru.gates_kernel", "MatMul input 1 in a GRU cell 'gates' scope"
    if re.search(r"lstm", name) and len(shape) == 2 and shape[1] % 4 == 0:
        return "lstm.kernel", "MatMul input 1 in an LSTM cell scope"
    return "dense.kernel", "MatMul input 1"


def _reset_gated_input(body, matmul):
    """True when the MatMul's input is concat(x, r * h) with r split from a sigmoid (GRUCell)."""
    concat = producer(body, matmul, 0)
    if concat is None or concat.op not in ("ConcatV2", "Concat"):
        return False
    for k in range(len(concat.inputs)):
        mul = producer(body, concat, k)
        if mul is None or mul.op != "Mul":
            continue
        for m in range(len(mul.inputs)):
            split = producer(body, mul, m)
            if split is not None and split.op in ("Split", "SplitV"):
                sources = [producer(body, split, q) for q in range(len(split.inputs))]
                if any(p is not None and p.op == "Sigmoid" for p in sources):
                    return True
    return False


def _after_bias(body, node):
    """The BiasAdd/Add following a MatMul if there is one, else the MatMul itself."""
    for user, _ in users(body, node):
        if user.op in _ADD:
            return user
    return node


def _split_count(body, split):
    if "num_split" in split.attr:
        return split.attr["num_split"].i
    return 0


def _pointwise_after_depthwise(body, conv):
    src = producer(body, conv, 0)
    return src is not None and src.op == "DepthwiseConv2dNative" and _kernel_is_1x1(body, conv)


def _depthwise_feeds_pointwise(body, depthwise):
    """The 1x1 Conv2D fed by a depthwise conv (separable conv), or None."""
    for n, s in users(body, depthwise):
        if n.op == "Conv2D" and s == 0 and _kernel_is_1x1(body, n):
            return n
    return None


def _kernel_is_1x1(body, conv):
    k = producer(body, conv, 1)
    if k is None:
        return False
    shape = k.attr["shape"].shape if "shape" in k.attr else None
    if shape is None:
        shape = k.attr["_output_shapes"].list.shape[0] if "_output_shapes" in k.attr else None
    return shape is not None and [d.size for d in shape.dim[:2]] == [1, 1]


def _embedding_layer(info, use):
    scope = use.node.scope
    # embedding_lookup ops sit in an `embedding_lookup*` scope: the layer is its parent
    parts = [p for p in scope.split("/") if p and not p.startswith("embedding_lookup")]
    return use.path + "/".join(parts) if parts else info.name.rpartition("/")[0] or info.name


# -- unfused normalization --------------------------------------------------------------
def _unfused_norm_role(use):
    """(role, reason) for the `batchnorm/Rsqrt/Mul/Sub` pattern of tf.nn.batch_normalization."""
    body, node, slot = use.body, use.node, use.slot
    other = _other_input(body, node, slot)
    if other is None:
        return None
    norm = "ln" if _is_layer_norm(body, node) else "bn"
    if node.op in ("Add", "AddV2") and any(u.op == "Rsqrt" for u, _ in users(body, node)):
        return "bn.moving_variance", "variance + epsilon feeding Rsqrt (batch normalization)"
    if node.op == "Mul":
        downstream = users(body, node)
        # mean * Rsqrt before gamma * Rsqrt: without gamma (tf_slim's default scale=False)
        # the mean meets the Rsqrt itself; its product is what the Sub subtracts
        if any(u.op == "Sub" and s == 1 for u, s in downstream) and other.op in ("Mul", "Rsqrt"):
            return "bn.moving_mean", "mean times Rsqrt scale subtracted (batch normalization mean)"
        if other.op == "Rsqrt":
            return norm + ".gamma", "Mul with Rsqrt (batch normalization scale)"
    if node.op == "Sub" and slot == 0 and other.op == "Mul":
        inner = [producer(body, other, k) for k in (0, 1)]
        if any(p is not None and p.op in ("Rsqrt", "Mul") for p in inner):
            return norm + ".beta", "offset minus mean*scale (batch normalization offset)"
    return None


def _is_layer_norm(body, node):
    """A norm is a layer norm when its moments reduce over axes that exclude the batch axis."""
    scope = node.scope.rpartition("/")[0] if node.scope.endswith("batchnorm") else node.scope
    if re.search(r"layer_?norm", node.name, re.I):
        return True
    mean = body.nodes.get(scope + "/moments/mean") if scope else body.nodes.get("moments/mean")
    if mean is None or len(mean.inputs) < 2:
        return False
    axes = body.node_list[mean.inputs[1]]
    if axes.op != "Const":
        return False
    tensor = axes.attr["value"].tensor
    values = list(tensor.int_val) or list(tensor.int64_val)
    if not values and tensor.tensor_content:
        import numpy as np

        values = np.frombuffer(tensor.tensor_content, dtype=np.int32 if tensor.dtype == 3 else np.int64).tolist()
    if not values:
        value = scalar_value(tensor)
        values = [value] if value is not None else []
    return bool(values) and 0 not in values


def _norm_layer(use):
    scope = use.node.scope
    if scope.endswith("batchnorm"):
        scope = scope.rpartition("/")[0]
    return use.path + scope if scope else use.path + use.node.name
