"""The generic custom layer: one TF op re-run by VarMapOp, its variables and constants
as Keras weights. Used by handlers for ops without a standard layer, and as the
builder's fallback for unmapped ops."""

import numpy as np

from tb_varmap.convert.attrs import encode_attrs
from tb_varmap.convert.graph import scope_of
from tb_varmap.convert.registry import Emit, Unsupported, Weight

INLINE_MAX = 64     # integer constants up to this size (axes, shapes) stay in the config


def layer_hint(gv, node, scoped=False):
    """Layer name hint: the TF name scope for layers with variables, else the node name."""
    if scoped and scope_of(node.name):
        return scope_of(node.name)
    return node.name


def op_emit(gv, node, fallback=False, reason="", name=None):
    from tb_varmap.convert.layers import VarMapOp

    args, inputs, specs, weights, names = [], [], [], [], set()
    for t in gv.inputs_of(node):
        if gv.is_live(t):
            args.append({"input": len(inputs)})
            inputs.append(t)
            continue
        b = gv.var(t)
        value = np.asarray(b.value) if b is not None else gv.static(t)
        if b is None and value.dtype.kind in "iub" and value.size <= INLINE_MAX:
            args.append({"const": value.reshape(-1).tolist(), "dtype": value.dtype.name,
                         "shape": list(value.shape)})
            continue
        if value.dtype.kind not in "iubfc":
            raise Unsupported(f"input {t!r} of dtype {value.dtype} cannot be a weight")
        wname = _unique(b.name.rsplit("/", 1)[-1] if b is not None else "const", names)
        trainable = bool(b.trainable) if b is not None else False
        args.append({"weight": len(specs)})
        weights.append(Weight(len(specs), value, b, trainable=trainable))
        specs.append({"name": wname, "shape": list(value.shape), "dtype": value.dtype.name,
                      "trainable": trainable})
    if not inputs:
        raise Unsupported(f"node {node.name!r} has no input that depends on the inputs")
    outs = gv.used_outputs(node.name)
    shapes = [_free_batch(gv.shape(f"{node.name}:{i}")) for i in outs]
    attrs = encode_attrs(node)
    layer_name = name or layer_hint(gv, node, scoped=False)

    def make(n):
        return VarMapOp(node.op, attrs=attrs, args=args, weight_specs=specs,
                        output_indices=outs, output_shapes=shapes, name=n)

    return Emit(make, inputs, [f"{node.name}:{i}" for i in outs], [node.name],
                name=layer_name, weights=weights, standard=False, fallback=fallback,
                reason=reason)


def _free_batch(shape):
    """Leading dim left free (the batch); None when the rank is unknown or scalar."""
    if not shape:
        return None
    return [None] + list(shape[1:])


def _unique(base, names):
    name, k = base, 1
    while name in names:
        name = f"{base}_{k}"
        k += 1
    names.add(name)
    return name
