"""Shape ops with constant (or batch-relative) arguments → Reshape, Permute,
Concatenate, ZeroPadding2D; anything touching the batch axis → VarMapOp."""

import numpy as np

from tb_varmap.convert.handlers.generic import op_emit
from tb_varmap.convert.registry import Emit, register


def _reshape_emit(gv, node, x, target):
    import keras

    dtype = gv.dtype(node)
    return Emit(lambda n: keras.layers.Reshape(tuple(target), name=n, dtype=dtype),
                [x], [node.name + ":0"], [node.name], name=node.name)


def _known(dims):
    return dims is not None and all(isinstance(d, int) and d >= 0 for d in dims)


@register("Reshape")
def reshape(gv, node):
    x, shape_t = gv.inputs_of(node)
    target = gv.partial(shape_t)
    if gv.is_live(x) and isinstance(target, list) and _keeps_batch(gv.shape(x), target):
        return _reshape_emit(gv, node, x, target[1:])
    return op_emit(gv, node)


def _keeps_batch(in_shape, target):
    """True when `target` is [batch, *rest]: a batch size read from the graph (None), or
    -1 with every other dim known and the per-example size unchanged."""
    if not target or not all(isinstance(d, int) for d in target[1:]):
        return False
    rest = target[1:]
    if target[0] is None:
        return sum(d == -1 for d in rest) <= 1 and all(d >= -1 for d in rest)
    if target[0] != -1 or not _known(rest) or not in_shape or not _known(in_shape[1:]):
        return False
    return int(np.prod(rest)) == int(np.prod(in_shape[1:]))


@register("Squeeze", "ExpandDims")
def squeeze_expand(gv, node):
    x = gv.inputs_of(node)[0]
    out = gv.shape(node.name + ":0")
    shape = gv.shape(x)
    if node.op == "Squeeze":
        axes = gv.attr(node, "squeeze_dims", [])
        touches_batch = not axes or any(a % len(shape) == 0 for a in axes) if shape else True
    else:
        axis = gv.static(gv.inputs_of(node)[1]).reshape(()).item()
        touches_batch = shape is None or axis % (len(shape) + 1) == 0
    if not touches_batch and out is not None and _known(out[1:]):
        return _reshape_emit(gv, node, x, out[1:])
    return op_emit(gv, node)


@register("Transpose")
def transpose(gv, node):
    import keras

    x, perm_t = gv.inputs_of(node)
    perm = gv.static(perm_t).reshape(-1).tolist() if not gv.is_live(perm_t) else None
    if perm and perm[0] == 0:
        dtype = gv.dtype(node)
        return Emit(lambda n: keras.layers.Permute(tuple(perm[1:]), name=n, dtype=dtype),
                    [x], [node.name + ":0"], [node.name], name=node.name)
    return op_emit(gv, node)


@register("ConcatV2", "Concat")
def concat(gv, node):
    import keras

    ins = gv.inputs_of(node)
    if node.op == "Concat":                 # pre-1.0 op: the axis comes first
        values, axis_t = ins[1:], ins[0]
    else:
        values, axis_t = ins[:-1], ins[-1]
    if not gv.is_live(axis_t) and all(gv.is_live(t) for t in values) and len(values) > 1:
        axis = int(gv.static(axis_t).reshape(()))
        rank = len(gv.shape(values[0]) or [])
        if rank and axis % rank != 0:
            dtype = gv.dtype(node)
            return Emit(lambda n: keras.layers.Concatenate(axis=axis, name=n, dtype=dtype),
                        values, [node.name + ":0"], [node.name], name=node.name)
    return op_emit(gv, node)


@register("MirrorPad")
def mirror_pad(gv, node):
    return op_emit(gv, node)


@register("Pad", "PadV2")
def pad(gv, node):
    import keras

    ins = gv.inputs_of(node)
    x, pads_t = ins[0], ins[1]
    zero = node.op == "Pad" or (not gv.is_live(ins[2]) and gv.static(ins[2]).item() == 0)
    if not gv.is_live(pads_t) and zero:
        p = gv.static(pads_t).tolist()
        if len(p) == 4 and p[0] == [0, 0] and p[3] == [0, 0]:
            padding = (tuple(p[1]), tuple(p[2]))
            dtype = gv.dtype(node)
            return Emit(lambda n: keras.layers.ZeroPadding2D(padding, name=n, dtype=dtype),
                        [x], [node.name + ":0"], [node.name], name=node.name)
    return op_emit(gv, node)
