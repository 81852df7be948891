"""NodeDef attrs <-> JSON-safe values (for custom layer configs; no arrays)."""

from tb_varmap.errors import BadInput


def encode_attr(node_name, key, value):
    """AttrValue -> [kind, json value]; tensors and functions are refused."""
    kind = value.WhichOneof("value")
    if kind == "s":
        return ["s", value.s.decode("latin-1")]
    if kind in ("i", "f", "b"):
        return [kind, getattr(value, kind)]
    if kind == "type":
        return ["type", _dtype_name(value.type)]
    if kind == "shape":
        return ["shape", _shape(value.shape)]
    if kind == "list":
        lst = value.list
        for sub in ("s", "i", "f", "b", "type", "shape"):
            items = list(getattr(lst, sub))
            if items:
                if sub == "s":
                    items = [x.decode("latin-1") for x in items]
                elif sub == "type":
                    items = [_dtype_name(x) for x in items]
                elif sub == "shape":
                    items = [_shape(x) for x in items]
                return ["list_" + sub, items]
        return ["list_i", []]
    raise BadInput(f"node {node_name!r}: attr {key!r} of kind {kind!r} cannot be stored "
                   "in a layer config (expected scalars, types, shapes or lists)")


def encode_attrs(node):
    return {k: encode_attr(node.name, k, v) for k, v in sorted(node.attr.items())
            if not k.startswith("_")}


def decode_attr(kind, value):
    """[kind, json value] -> what tf.raw_ops takes."""
    import tensorflow as tf

    if kind == "type":
        return tf.as_dtype(value)
    if kind == "list_type":
        return [tf.as_dtype(v) for v in value]
    if kind == "shape":
        return tf.TensorShape(value)
    if kind == "list_shape":
        return [tf.TensorShape(v) for v in value]
    return value


def _dtype_name(enum):
    import tensorflow as tf

    return tf.as_dtype(enum).name


def _shape(shape):
    if shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape.dim]
