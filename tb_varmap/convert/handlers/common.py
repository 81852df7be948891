"""Helpers shared by handlers: role checks, weight sources, fusing a following bias or
activation."""

import numpy as np

from tb_varmap.convert.graph import node_of
from tb_varmap.convert.registry import Unsupported, Weight

BIAS_ROLES = {"dense.bias", "conv.bias", "conv_transpose.bias", "depthwise.bias",
              "separable.bias", "bias", "constant"}
# TF activation op -> Keras activation name (fused into the layer before it)
ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Elu": "elu", "Selu": "selu",
               "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
               "Softmax": "softmax"}


def skip_identity(gv, t):
    """(tensor, producing node) behind any Identity/Snapshot chain ending at tensor `t`."""
    n = gv.nodes[node_of(t)]
    while n.op in ("Identity", "Snapshot"):
        t = gv.inputs_of(n)[0]
        n = gv.nodes[node_of(t)]
    return t, n


def role_ok(binding, roles):
    """A binding fits a standard weight unless its role says otherwise (custom.param etc.)."""
    return binding is None or not binding.role or binding.role in roles or \
        binding.role == "constant"


def source(gv, t, roles):
    """(value, binding) of a non-live operand, or None when it must stay custom."""
    if gv.is_live(t):
        return None
    b = gv.var(t)
    if b is not None:
        return (np.asarray(b.value), b) if role_ok(b, roles) else None
    return gv.static(t), None


def weight(attr, src, note="", index=None):
    value, binding = src
    return Weight(attr, value, binding, note=note,
                  index=None if index is None or binding is None else
                  np.ascontiguousarray(index))


def sole_consumer(gv, node):
    """The one unclaimed needed node reading `node`'s only used output (not a model
    output), else None."""
    t = node.name + ":0"
    if gv.used_outputs(node.name) != [0] or t in gv.outputs:
        return None
    cons = gv.consumers.get(t, [])
    if len(cons) != 1 or cons[0][0] in gv.claimed:
        return None
    return gv.nodes[cons[0][0]]


def fuse_bias(gv, node, units, nhwc_only=True):
    """A BiasAdd/Add of a [units] variable right after `node` → (node, src) or None."""
    nxt = sole_consumer(gv, node)
    if nxt is None or nxt.op not in ("BiasAdd", "BiasAddV1", "Add", "AddV2"):
        return None
    if nxt.op == "BiasAdd" and gv.attr(nxt, "data_format", "NHWC") != "NHWC":
        return None
    ins = gv.inputs_of(nxt)
    other = [t for t in ins if t != node.name + ":0"]
    if len(other) != 1 or (nxt.op == "BiasAdd" and ins[0] != node.name + ":0"):
        return None
    try:
        src = source(gv, other[0], BIAS_ROLES)
    except Unsupported:
        return None
    if src is None or src[0].shape != (units,):
        return None
    return nxt, src


def fuse_activation(gv, node):
    """An activation right after `node` → (node, keras name) or None."""
    nxt = sole_consumer(gv, node)
    if nxt is None or nxt.op not in ACTIVATIONS:
        return None
    return nxt, ACTIVATIONS[nxt.op]


def fuse_tail(gv, node, units):
    """Bias then activation after `node`: (last node, nodes, bias src, activation)."""
    nodes, last, bias, act = [], node, None, None
    fb = fuse_bias(gv, node, units)
    if fb is not None:
        last, bias = fb
        nodes.append(last.name)
    fa = fuse_activation(gv, last)
    if fa is not None:
        last, act = fa
        nodes.append(last.name)
    return last, nodes, bias, act


def nhwc(gv, node):
    fmt = gv.attr(node, "data_format", "NHWC")
    if fmt != "NHWC":
        raise Unsupported(f"node {node.name!r} uses data_format {fmt}; only NHWC maps to "
                          "Keras layers (channels_last)")


def hw(values, what, node):
    """[1, h, w, 1] attr → (h, w); batch/channel entries must be 1."""
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise Unsupported(f"node {node.name!r}: {what} {values} must be [1, h, w, 1]")
    return (values[1], values[2])
