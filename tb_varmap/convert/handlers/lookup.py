"""A partitioned embedding_lookup → ONE keras.layers.Embedding over the joined table.

embedding_lookup on a partitioned variable writes: flat ids → DynamicPartition of the
ids (per-partition row) and of their positions → a Gather per partition → DynamicStitch
back in id order (then a Reshape to ids.shape + [dim]). The pattern starts at the stitch.
Which row of which partition each id reads is taken from the graph itself: TF evaluates
the partition assignment and the per-partition row for ids 0..vocab-1, so "mod", "div"
or any other layout joins correctly.
"""

from dataclasses import replace

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.handlers.common import skip_identity
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register_pattern

GATHERS = ("Gather", "GatherV2", "ResourceGather")
TABLE_ROLES = {"embedding.table", None, ""}




@register_pattern("partitioned_embedding", ops=("DynamicStitch", "ParallelDynamicStitch"))
def partitioned_lookup(gv, stitch):
    import keras

    ins = gv.inputs_of(stitch)
    p = len(ins) // 2
    if p < 2 or len(ins) != 2 * p:
        return None
    gathers, parts = [], []
    for k, t in enumerate(ins[p:]):
        _, g = skip_identity(gv, t)
        if g.op not in GATHERS:
            return None
        if g.op == "GatherV2" and (gv.is_live(gv.inputs_of(g)[2]) or
                                   int(gv.static(gv.inputs_of(g)[2]).reshape(())) != 0):
            return None
        b = gv.var(gv.inputs_of(g)[0])
        if b is None or not b.name.endswith(f"/part_{k}"):
            return None
        gathers.append(g)
        parts.append(b)
    base = parts[0].name.rsplit("/part_", 1)[0]
    if any(b.name != f"{base}/part_{k}" for k, b in enumerate(parts)):
        return None
    if parts[0].role not in TABLE_ROLES:
        raise Unsupported(f"stitch {stitch.name!r}: variable {base!r} has role "
                          f"{parts[0].role!r}, expected embedding.table")
    ids_parts = [skip_identity(gv, gv.inputs_of(g)[1])[1] for g in gathers]
    pos_parts = [skip_identity(gv, t)[1] for t in ins[:p]]
    for group in (ids_parts, pos_parts):
        if len({n.name for n in group}) != 1 or group[0].op != "DynamicPartition":
            return None
    id_part, pos_part = ids_parts[0], pos_parts[0]
    if gv.inputs_of(id_part)[1] != gv.inputs_of(pos_part)[1]:
        return None
    flat = _flat_ids(gv, pos_part)
    if flat is None:
        return None
    values = [np.asarray(b.value) for b in parts]
    if any(v.ndim != 2 or v.shape[1] != values[0].shape[1] for v in values):
        return None
    table = _join(gv, flat, id_part, values, stitch)
    dim = table.shape[1]
    x, out, more = _reshaped(gv, flat, stitch, dim)
    binding = replace(parts[0], name=base, value=table)
    dtype = table.dtype.name

    def make(n):
        return keras.layers.Embedding(table.shape[0], dim, name=n, dtype=dtype)

    return Emit(make, [x], [out], [stitch.name] + [g.name for g in gathers] +
                [id_part.name, pos_part.name] + more, name=node_of(stitch.name),
                weights=[Weight("embeddings", table, binding,
                                note=f"{p} partitions joined in id order (layout read "
                                     "from the lookup graph)")])


def _flat_ids(gv, pos_part):
    """Positions are Range(0, Size(flat_ids), 1): the flat ids tensor."""
    _, r = skip_identity(gv, gv.inputs_of(pos_part)[0])
    if r.op != "Range":
        return None
    _, size = skip_identity(gv, gv.inputs_of(r)[1])
    if size.op != "Size":
        return None
    flat = gv.inputs_of(size)[0]
    return flat if gv.is_live(flat) else None


def _join(gv, flat, id_part, values, stitch):
    """table[i] = values[partition(i)][row(i)], both evaluated by TF for ids 0..V-1."""
    import tensorflow as tf

    g = gv.tf_graph()
    if g is None:
        raise Unsupported(f"stitch {stitch.name!r}: the graph does not import into TF, "
                          "cannot evaluate the partition layout")
    vocab = sum(v.shape[0] for v in values)
    dtype = g.get_tensor_by_name("g/" + flat).dtype.as_numpy_dtype
    data_t, part_t = gv.inputs_of(id_part)
    try:
        with tf.compat.v1.Session(graph=g) as sess:
            rows, assign = sess.run(["g/" + data_t, "g/" + part_t],
                                    {"g/" + flat: np.arange(vocab, dtype=dtype)})
    except Exception as e:  # noqa: BLE001
        raise Unsupported(f"stitch {stitch.name!r}: cannot evaluate the partition layout: "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    rows, assign = np.asarray(rows).reshape(-1), np.asarray(assign).reshape(-1)
    table = np.empty((vocab, values[0].shape[1]), values[0].dtype)
    for i in range(vocab):
        k, r = int(assign[i]), int(rows[i])
        if not (0 <= k < len(values) and 0 <= r < values[k].shape[0]):
            raise Unsupported(f"stitch {stitch.name!r}: id {i} maps to partition {k} row "
                              f"{r}, outside the partitions")
        table[i] = values[k][r]
    counts = np.bincount(assign.astype(np.int64), minlength=len(values))
    if list(counts) != [v.shape[0] for v in values]:
        raise Unsupported(f"stitch {stitch.name!r}: ids 0..{vocab - 1} do not cover the "
                          f"partition rows once each ({list(counts)} per partition)")
    return table


def _reshaped(gv, flat, stitch, dim):
    """ids → Reshape[-1] → ... → stitch → Reshape(ids.shape + [dim]): the Embedding takes
    the original ids and gives the reshaped output when that frame is there."""
    _, r_in = skip_identity(gv, flat)
    cons = gv.consumers.get(stitch.name + ":0", [])
    if r_in.op == "Reshape" and len(cons) == 1:
        r_out = gv.nodes[cons[0][0]]
        ids = gv.inputs_of(r_in)[0]
        if r_out.op == "Reshape" and gv.is_live(ids):
            shape_in, shape_out = gv.shape(ids), gv.shape(r_out.name + ":0")
            if shape_in and shape_out and shape_out[:-1] == shape_in and \
                    shape_out[-1] == dim and gv.partial(gv.inputs_of(r_in)[1]) == [-1]:
                return ids, r_out.name + ":0", [r_out.name]
    return flat, stitch.name + ":0", []
