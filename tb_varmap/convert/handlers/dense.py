"""MatMul / BatchMatMul with a variable [+ bias] [+ activation] → Dense."""

import numpy as np

from tb_varmap.convert.handlers.common import fuse_tail, source, weight
from tb_varmap.convert.handlers.generic import layer_hint, op_emit
from tb_varmap.convert.registry import Emit, register

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
    note = ""
    if gv.attr(node, "transpose_b", False) or gv.attr(node, "adj_y", False):
        src = (np.ascontiguousarray(src[0].T), src[1])
        note = "transposed from [out, in] (transpose_b)"
    units = src[0].shape[1]
    last, more, bias, act = fuse_tail(gv, node, units)
    dtype = src[0].dtype.name
    weights = [weight("kernel", src, note)]
    if bias is not None:
        weights.append(weight("bias", bias))

    def make(n):
        return keras.layers.Dense(units, activation=act, use_bias=bias is not None,
                                  name=n, dtype=dtype)

    return Emit(make, [a], [last.name + ":0"], [node.name] + more,
                name=layer_hint(gv, node, scoped=True), weights=weights)
