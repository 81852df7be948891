"""Binary elementwise ops. Both operands computed from the inputs → Keras merge layers
(Add, Subtract, Multiply, Maximum, Minimum); RealDiv, or an operand that is a variable
or constant → VarMapOp (the variable a Keras weight, trainable as in TF)."""

from tb_varmap.convert.handlers.generic import op_emit
from tb_varmap.convert.registry import Emit, register

MERGE = {"Add": "Add", "AddV2": "Add", "Sub": "Subtract", "Mul": "Multiply",
         "Maximum": "Maximum", "Minimum": "Minimum"}


@register("Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "BiasAdd")
def binary(gv, node):
    import keras

    ins = gv.inputs_of(node)
    cls = MERGE.get(node.op)
    if cls is None or not all(gv.is_live(t) for t in ins) or len(set(ins)) != len(ins):
        return op_emit(gv, node, name=_hint(gv, node))
    shapes = [gv.shape(t) for t in ins]
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return op_emit(gv, node)          # broadcasting across ranks: keep the TF op
    dtype = gv.dtype(node)
    return Emit(lambda n: getattr(keras.layers, cls)(name=n, dtype=dtype),
                ins, [node.name + ":0"], [node.name], name=node.name)


def _hint(gv, node):
    # x * param inside scope "gate" reads best as the scope's name
    if any(gv.var(t) is not None for t in gv.inputs_of(node)) and "/" in node.name:
        return node.name.rsplit("/", 1)[0]
    return node.name
