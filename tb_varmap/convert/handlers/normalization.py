"""Fused (FusedBatchNorm*) and unfused (Rsqrt/Mul/Sub pattern) batch norm →
BatchNormalization. gamma/beta may be absent (tf_slim default scale=False)."""

import numpy as np

from tb_varmap.convert.handlers.common import sole_consumer, source, weight
from tb_varmap.convert.handlers.generic import layer_hint
from tb_varmap.convert.registry import Emit, Unsupported, register, register_pattern

GAMMA = {"bn.gamma"}
BETA = {"bn.beta"}
MEAN = {"bn.moving_mean"}
VAR = {"bn.moving_variance"}


def _bn_emit(gv, x, out, nodes, name, axis, eps, gamma, beta, mean, var, dtype):
    import keras

    weights = []
    if gamma is not None:
        weights.append(weight("gamma", gamma))
    if beta is not None:
        weights.append(weight("beta", beta))
    weights += [weight("moving_mean", mean), weight("moving_variance", var)]

    def make(n):
        return keras.layers.BatchNormalization(axis=axis, epsilon=eps,
                                               center=beta is not None,
                                               scale=gamma is not None, name=n,
                                               dtype=dtype)

    return Emit(make, [x], [out], nodes, name=name, weights=weights)


def _need(src, what, node):
    if src is None:
        raise Unsupported(f"node {node.name!r}: {what} is not a variable or constant "
                          "with a batch-norm role")
    return src


@register("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(gv, node):
    x, scale, offset, mean, var = gv.inputs_of(node)[:5]
    if not gv.is_live(x) or any(gv.is_live(t) for t in (scale, offset, mean, var)):
        raise Unsupported(f"node {node.name!r}: only x may depend on the inputs")
    if gv.used_outputs(node.name) != [0]:
        raise Unsupported(f"node {node.name!r}: batch statistics outputs are used "
                          "(training-mode graph)")
    fmt = gv.attr(node, "data_format", "NHWC")
    axis = -1 if fmt in ("NHWC", "NDHWC") else 1
    if gv.attr(node, "is_training", True):
        gv.warnings.append(f"{node.name}: FusedBatchNorm has is_training=True (uses batch "
                           "statistics); exported as inference BatchNormalization with "
                           "the moving statistics")
    gamma = _need(source(gv, scale, GAMMA), "scale", node)
    beta = _need(source(gv, offset, BETA), "offset", node)
    if gamma[1] is None and np.all(gamma[0] == 1):
        gamma = None                    # scale=False: TF feeds a constant of ones
    if beta[1] is None and np.all(beta[0] == 0):
        beta = None
    mean = _need(source(gv, mean, MEAN), "mean", node)
    var = _need(source(gv, var, VAR), "variance", node)
    eps = float(gv.attr(node, "epsilon", 1e-4))
    return _bn_emit(gv, x, node.name + ":0", [node.name], layer_hint(gv, node, True),
                    axis, eps, gamma, beta, mean, var, mean[0].dtype.name)


@register_pattern("batchnorm_unfused", ops=("Mul",))
def unfused_batch_norm(gv, node):
    """x * inv + (beta - mean * inv), inv = rsqrt(var + eps) [* gamma]
    (tf.nn.batch_normalization; beta absent: + (-mean * inv))."""
    ins = gv.inputs_of(node)
    live = [t for t in ins if gv.is_live(t)]
    if len(live) != 1 or len(ins) != 2:
        return None
    x = live[0]
    inv = ins[1] if ins[0] == x else ins[0]
    chain = _inv_chain(gv, inv)
    if chain is None:
        return None
    var_t, eps, gamma_t = chain
    add = sole_consumer(gv, node)
    if add is None or add.op not in ("Add", "AddV2"):
        return None
    other = [t for t in gv.inputs_of(add) if t != node.name + ":0"]
    if len(other) != 1 or gv.is_live(other[0]):
        return None
    shift = _shift(gv, other[0], inv)
    if shift is None:
        return None
    mean_t, beta_t = shift
    try:
        mean = source(gv, mean_t, MEAN)
        var = source(gv, var_t, VAR)
        gamma = source(gv, gamma_t, GAMMA) if gamma_t else None
        beta = source(gv, beta_t, BETA) if beta_t else None
    except Unsupported:
        return None
    if mean is None or var is None or (gamma_t and gamma is None) or \
            (beta_t and beta is None) or mean[0].ndim != 1:
        return None
    shape = gv.shape(x)
    if shape is None or shape[-1] != mean[0].shape[0]:
        return None
    return _bn_emit(gv, x, add.name + ":0", [node.name, add.name],
                    _bn_scope(node.name), -1, eps, gamma, beta, mean, var,
                    mean[0].dtype.name)


def _bn_scope(name):
    # ".../batchnorm/mul_1" → "..." (the layer scope above tf.nn's "batchnorm")
    parts = name.split("/")[:-1]
    if parts and parts[-1].startswith("batchnorm"):
        parts = parts[:-1]
    return "/".join(parts) or name


def _node(gv, t):
    return gv.nodes[t.split(":")[0]]


def _inv_chain(gv, inv):
    """inv = Rsqrt(var + eps) [* gamma] → (var tensor, eps, gamma tensor | None)."""
    n = _node(gv, inv)
    gamma_t = None
    if n.op == "Mul":
        a, b = gv.inputs_of(n)
        if _node(gv, a).op == "Rsqrt":
            n, gamma_t = _node(gv, a), b
        elif _node(gv, b).op == "Rsqrt":
            n, gamma_t = _node(gv, b), a
        else:
            return None
    if n.op != "Rsqrt":
        return None
    add = _node(gv, gv.inputs_of(n)[0])
    if add.op not in ("Add", "AddV2"):
        return None
    a, b = gv.inputs_of(add)
    for var_t, eps_t in ((a, b), (b, a)):
        eps = gv.const(eps_t)
        if eps is not None and eps.size == 1 and gv.var(var_t) is not None:
            return var_t, float(eps.reshape(())), gamma_t
    return None


def _shift(gv, t, inv):
    """beta - mean * inv → (mean, beta); (-mean) * inv or -(mean * inv) → (mean, None)."""
    n = _node(gv, t)
    beta_t = None
    if n.op == "Mul" and inv in gv.inputs_of(n):         # (-mean) * inv
        other = [i for i in gv.inputs_of(n) if i != inv]
        neg = _node(gv, other[0]) if len(other) == 1 else None
        if neg is not None and neg.op == "Neg":
            return gv.inputs_of(neg)[0], None
        return None
    if n.op == "Sub":
        beta_t, prod = gv.inputs_of(n)
    elif n.op == "Neg":
        prod = gv.inputs_of(n)[0]
    else:
        return None
    p = _node(gv, prod)
    if p.op != "Mul":
        return None
    a, b = gv.inputs_of(p)
    if b == inv:
        return a, beta_t
    if a == inv:
        return b, beta_t
    return None
