"""Mean over H, W of NHWC → GlobalAveragePooling2D; other Mean/Sum/Max/Min/Prod →
VarMapOp (axes kept as a small constant)."""

from tb_varmap.convert.handlers.generic import op_emit
from tb_varmap.convert.registry import Emit, register


@register("Mean", "Sum", "Max", "Min", "Prod")
def reduce(gv, node):
    import keras

    x, axes_t = gv.inputs_of(node)
    if node.op == "Mean" and not gv.is_live(axes_t):
        axes = gv.static(axes_t).reshape(-1).tolist()
        shape = gv.shape(x)
        if shape is not None and len(shape) == 4 and sorted(a % 4 for a in axes) == [1, 2]:
            keep = bool(gv.attr(node, "keep_dims", False))
            dtype = gv.dtype(node)
            return Emit(lambda n: keras.layers.GlobalAveragePooling2D(
                keepdims=keep, name=n, dtype=dtype),
                [x], [node.name + ":0"], [node.name], name=node.name)
    return op_emit(gv, node)
