"""Gather rows of a [vocab, dim] variable by ids computed from the inputs → Embedding."""

from tb_varmap.convert.handlers.common import source, weight
from tb_varmap.convert.handlers.generic import layer_hint, op_emit
from tb_varmap.convert.registry import Emit, register

TABLE_ROLES = {"embedding.table"}


@register("GatherV2", "Gather", "ResourceGather")
def gather(gv, node):
    import keras

    ins = gv.inputs_of(node)
    params, ids = ins[0], ins[1]
    axis = 0
    if node.op == "GatherV2":
        if gv.is_live(ins[2]):
            return op_emit(gv, node)
        axis = int(gv.static(ins[2]).reshape(()))
    if gv.attr(node, "batch_dims", 0) or axis != 0 or not gv.is_live(ids):
        return op_emit(gv, node)
    src = source(gv, params, TABLE_ROLES)
    if src is None or src[0].ndim != 2:
        return op_emit(gv, node)
    vocab, dim = src[0].shape
    dtype = src[0].dtype.name

    def make(n):
        return keras.layers.Embedding(vocab, dim, name=n, dtype=dtype)

    return Emit(make, [ids], [node.name + ":0"], [node.name],
                name=layer_hint(gv, node, scoped=False), weights=[weight("embeddings", src)])
