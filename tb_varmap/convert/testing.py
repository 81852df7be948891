"""Test helper: VariableBindings straight from a tf.Graph and a live Session (the real
glue builds them from link.VariableInfo + the checkpoint instead)."""

import numpy as np

from tb_varmap.convert.bindings import VariableBinding

VAR_OPS = ("VariableV2", "Variable", "VarHandleOp")


def bindings_from_graph(graph, sess, roles=None, trainable=None):
    """One binding per variable node of `graph`: read tensors as link.py defines them,
    value read through `sess`, trainable from the TRAINABLE_VARIABLES collection
    (`trainable` {name: bool} overrides), role from `roles` {name: role} or ""."""
    import tensorflow as tf

    roles = roles or {}
    trainable = trainable or {}
    with graph.as_default():
        coll = {v.op.name for v in tf.compat.v1.trainable_variables()}
    out = []
    for op in graph.get_operations():
        if op.type not in VAR_OPS:
            continue
        reads, value_t = [], None
        for c in op.outputs[0].consumers():
            if op.type == "VarHandleOp":
                if c.type == "ReadVariableOp":
                    reads.append(c.outputs[0].name)
                    value_t = c.outputs[0]
                elif c.type not in ("AssignVariableOp", "VarIsInitializedOp",
                                    "AssignAddVariableOp", "AssignSubVariableOp"):
                    reads.append(op.outputs[0].name)     # handle used directly
            elif c.type == "Identity" and c.name == op.name + "/read":
                reads.append(c.outputs[0].name)
                value_t = c.outputs[0]
            elif c.type not in ("Assign", "AssignAdd", "AssignSub", "ApplyAdam",
                                "ApplyGradientDescent", "SaveV2", "IsVariableInitialized"):
                reads.append(op.outputs[0].name)
        if value_t is None:
            with graph.as_default():
                value_t = (tf.raw_ops.ReadVariableOp(resource=op.outputs[0],
                                                     dtype=op.get_attr("dtype"))
                           if op.type == "VarHandleOp" else op.outputs[0])
        value = np.asarray(sess.run(value_t))
        out.append(VariableBinding(name=op.name, read_tensors=sorted(set(reads)),
                                   role=roles.get(op.name, ""),
                                   trainable=trainable.get(op.name, op.name in coll),
                                   value=value))
    return out


def run_model(model, feeds):
    """Call a converted model on numpy feeds (list, in input order)."""
    out = model(list(feeds), training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o) for o in outs]


def check_weights(conversion, variables):
    """Every bound Keras weight holds its checkpoint value byte for byte (transposed
    kernels compared transposed); every non-input layer has a LayerBinding."""
    by_name = {v.name: v for v in variables}
    weights = {}
    for layer in conversion.model.layers:
        for w in layer.weights:
            weights[w.path] = w
    for lb in conversion.layers:
        for v in lb.variables:
            got = np.asarray(weights[v["weight"]].numpy())
            want = np.asarray(by_name[v["variable"]].value)
            if "transposed" in v.get("note", ""):
                want = np.ascontiguousarray(want.T)
            assert got.dtype == want.dtype and got.shape == want.shape, v
            assert got.tobytes() == want.tobytes(), f"weight {v} differs from checkpoint"
    bound = {lb.layer for lb in conversion.layers}
    for layer in conversion.model.layers:
        if type(layer).__name__ != "InputLayer":
            assert layer.name in bound, f"layer {layer.name} has no LayerBinding"
