"""MaxPool / AvgPool (NHWC) → MaxPooling2D / AveragePooling2D."""

from tb_varmap.convert.handlers.common import hw, nhwc
from tb_varmap.convert.registry import Emit, Unsupported, register


@register("MaxPool", "AvgPool")
def pool(gv, node):
    import keras

    nhwc(gv, node)
    size = hw(gv.attr(node, "ksize"), "ksize", node)
    strides = hw(gv.attr(node, "strides"), "strides", node)
    padding = gv.attr(node, "padding")
    if padding not in ("SAME", "VALID"):
        raise Unsupported(f"node {node.name!r}: padding {padding!r}")
    cls = keras.layers.MaxPooling2D if node.op == "MaxPool" else keras.layers.AveragePooling2D
    dtype = gv.dtype(node)
    return Emit(lambda n: cls(size, strides=strides, padding=padding.lower(), name=n,
                              dtype=dtype),
                [gv.inputs_of(node)[0]], [node.name + ":0"], [node.name], name=node.name)
