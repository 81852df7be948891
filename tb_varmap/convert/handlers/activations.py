"""Activation ops → keras Activation / LeakyReLU / Softmax."""

from tb_varmap.convert.handlers.common import ACTIVATIONS
from tb_varmap.convert.registry import Emit, register


@register(*[op for op in ACTIVATIONS if op != "Softmax"])
def activation(gv, node):
    import keras

    x = gv.inputs_of(node)[0]
    name = ACTIVATIONS[node.op]
    dtype = gv.dtype(node)
    return Emit(lambda n: keras.layers.Activation(name, name=n, dtype=dtype),
                [x], [node.name + ":0"], [node.name], name=node.name)


@register("LeakyRelu")
def leaky_relu(gv, node):
    import keras

    alpha = float(gv.attr(node, "alpha", 0.2))
    dtype = gv.dtype(node)
    return Emit(lambda n: keras.layers.LeakyReLU(negative_slope=alpha, name=n, dtype=dtype),
                [gv.inputs_of(node)[0]], [node.name + ":0"], [node.name], name=node.name)


@register("Softmax")
def softmax(gv, node):
    import keras

    x = gv.inputs_of(node)[0]
    dtype = gv.dtype(node)
    return Emit(lambda n: keras.layers.Softmax(axis=-1, name=n, dtype=dtype),
                [x], [node.name + ":0"], [node.name], name=node.name)
