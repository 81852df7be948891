"""MatMul / BatchMatMul with a variable [+ bias] [+ activation] → Dense; TF1's
per-step dense (reshape [B, T, C] → [B*T, C], MatMul, reshape back) → one Dense on the
sequence."""

import numpy as np

from tb_varmap.convert.handlers.common import fuse_tail, source, weight
from tb_varmap.convert.handlers.generic import layer_hint, op_emit
from tb_varmap.convert.handlers.common import sole_consumer
from tb_varmap.convert.registry import Emit, register, register_pattern

KERNEL_ROLES = {"dense.kernel"}


@register("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def matmul(gv, node):
    import keras

    a, b = gv.inputs_of(node)
    if not gv.is_live(a):
        return op_emit(gv, node)          # W @ x, or x @ x: custom layer
    src = source(gv, b, KERNEL_ROLES)
    if src is None or src[0].ndim != 2:
        return op_emit(gv, node)
    if gv.attr(node, "transpose_a", False) or gv.attr(node, "adj_x", False):
        return op_emit(gv, node)
    note, index = "", None
    if gv.attr(node, "transpose_b", False) or gv.attr(node, "adj_y", False):
        index = np.arange(src[0].size).reshape(src[0].shape).T
        src = (np.ascontiguousarray(src[0].T), src[1])
        note = "transposed from [out, in] (transpose_b)"
    units = src[0].shape[1]
    last, more, bias, act = fuse_tail(gv, node, units)
    dtype = src[0].dtype.name
    weights = [weight("kernel", src, note, index)]
    if bias is not None:
        weights.append(weight("bias", bias))

    def make(n):
        return keras.layers.Dense(units, activation=act, use_bias=bias is not None,
                                  name=n, dtype=dtype)

    return Emit(make, [a], [last.name + ":0"], [node.name] + more,
                name=layer_hint(gv, node, scoped=True), weights=weights)


@register_pattern("time_distributed_dense", ops=("Reshape",))
def time_distributed_dense(gv, node):
    """reshape(x [B, T, C], [-1, C]) @ W [+ b] [+ act] → reshape([B, -1 or T, U]), as
    TF1 sequence models (CTC, taggers) wrote a dense applied at every step: Keras Dense
    on x does the same per step. The flat [B*T, ...] tensors stay internal."""
    import keras

    x = gv.inputs_of(node)[0]
    in_shape = gv.shape(x)
    if not gv.is_live(x) or not in_shape or len(in_shape) != 3 or in_shape[2] is None:
        return None
    if gv.partial(gv.inputs_of(node)[1]) != [-1, in_shape[2]]:
        return None
    mm = sole_consumer(gv, node)
    if mm is None or mm.op != "MatMul" or gv.inputs_of(mm)[0] != node.name + ":0" or \
            gv.attr(mm, "transpose_a", False):
        return None
    src = source(gv, gv.inputs_of(mm)[1], KERNEL_ROLES)
    if src is None or src[0].ndim != 2:
        return None
    note, index = "", None
    if gv.attr(mm, "transpose_b", False):
        index = np.arange(src[0].size).reshape(src[0].shape).T
        src = (np.ascontiguousarray(src[0].T), src[1])
        note = "transposed from [out, in] (transpose_b)"
    units = src[0].shape[1]
    last, more, bias, act = fuse_tail(gv, mm, units)
    back = sole_consumer(gv, last)
    if back is None or back.op != "Reshape":
        return None
    target = gv.partial(gv.inputs_of(back)[1])
    steps = in_shape[1]
    batch = in_shape[0]                 # None, or a batch size the graph fixes
    if not isinstance(target, list) or len(target) != 3 or target[2] != units or not (
            (target[0] in (None, batch) and target[1] in (-1, steps)) or
            (target[0] == -1 and steps is not None and target[1] == steps)):
        return None
    weights = [weight("kernel", src, note, index)]
    if bias is not None:
        weights.append(weight("bias", bias))
    dtype = src[0].dtype.name

    def make(n):
        return keras.layers.Dense(units, activation=act, use_bias=bias is not None,
                                  name=n, dtype=dtype)

    return Emit(make, [x], [back.name + ":0"], [node.name, mm.name] + more + [back.name],
                name=layer_hint(gv, mm, scoped=True), weights=weights)
