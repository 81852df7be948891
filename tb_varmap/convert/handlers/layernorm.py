"""Layer normalization as tf_slim / contrib layer_norm and BERT write it:
moments(x, axes) → Rsqrt(var + eps) [* gamma] → x * inv + (beta - mean * inv)
→ keras.layers.LayerNormalization(axis=axes, epsilon=eps) (eps read from the graph).

Params of the normalized axes' shape map as they are; params over fewer axes (slim's
default begin_norm_axis=1 with per-channel gamma/beta) keep their shape in the custom
BroadcastLayerNorm (family_layers.py), so they stay tied and train as in TF.
"""

import numpy as np

from tb_varmap.convert.handlers.common import source
from tb_varmap.convert.registry import Emit, Unsupported, Weight, register_pattern

GAMMA = {"ln.gamma", "bn.gamma"}
BETA = {"ln.beta", "bn.beta"}


def _one(gv, t, ops, n_of=None):
    """The single needed consumer of tensor t with op in ops, else None."""
    cons = [gv.nodes[c] for c, _ in gv.consumers.get(t, []) if gv.nodes[c].op in ops]
    return cons[0] if len(cons) == 1 else None


def _other(gv, node, t):
    ins = gv.inputs_of(node)
    rest = [i for i in ins if i != t]
    return rest[0] if len(ins) == 2 and len(rest) == 1 else None


@register_pattern("layer_norm", ops=("Mean",))
def layer_norm(gv, mean):
    import keras

    x, axes_t = gv.inputs_of(mean)
    if not gv.is_live(x) or not gv.attr(mean, "keep_dims", False):
        return None
    m = mean.name + ":0"
    shape = gv.shape(x)
    try:
        axes = sorted(int(a) % len(shape) for a in np.ravel(gv.static(axes_t)))
    except (Unsupported, TypeError):
        return None
    if not shape or 0 in axes or any(shape[a] is None for a in axes):
        return None
    sg = _one(gv, m, ("StopGradient",))
    sq = _one(gv, sg.name + ":0" if sg else m, ("SquaredDifference",))
    if sq is None or x not in gv.inputs_of(sq):
        return None
    var = _one(gv, sq.name + ":0", ("Mean",))
    if var is None or gv.inputs_of(var)[0] != sq.name + ":0":
        return None
    add = _one(gv, var.name + ":0", ("Add", "AddV2"))
    eps_t = _other(gv, add, var.name + ":0") if add else None
    eps = gv.const(eps_t) if eps_t else None
    if eps is None or eps.size != 1:
        return None
    rsqrt = _one(gv, add.name + ":0", ("Rsqrt",))
    if rsqrt is None:
        return None
    inv, gamma_t = rsqrt.name + ":0", None
    g_mul = _one(gv, inv, ("Mul",))
    if g_mul is not None and not gv.is_live(_other(gv, g_mul, inv) or x):
        gamma_t, inv = _other(gv, g_mul, inv), g_mul.name + ":0"
    users = [gv.nodes[c] for c, _ in gv.consumers.get(inv, [])]
    x_mul = [u for u in users if u.op == "Mul" and x in gv.inputs_of(u)]
    m_mul = [u for u in users if u.op == "Mul" and m in gv.inputs_of(u)]
    if len(x_mul) != 1 or len(m_mul) != 1 or len(users) != 2:
        return None
    shift = _one(gv, m_mul[0].name + ":0", ("Sub", "Neg"))
    beta_t = None
    if shift is not None and shift.op == "Sub":
        beta_t = gv.inputs_of(shift)[0]
        if gv.inputs_of(shift)[1] != m_mul[0].name + ":0" or gv.is_live(beta_t):
            return None
    if shift is None:
        return None
    out = _one(gv, x_mul[0].name + ":0", ("Add", "AddV2"))
    if out is None or _other(gv, out, x_mul[0].name + ":0") != shift.name + ":0":
        return None
    gamma = source(gv, gamma_t, GAMMA) if gamma_t else None
    beta = source(gv, beta_t, BETA) if beta_t else None
    if (gamma_t and gamma is None) or (beta_t and beta is None):
        return None
    weights, tied = [], False
    for attr, src in (("gamma", gamma), ("beta", beta)):
        if src is None:
            continue
        value, binding = src
        full = _fit(value, shape, axes)
        if full is None:
            return None
        tied = tied or full.shape != value.shape
        weights.append((attr, value, full, binding))
    nodes = [n for n in (mean, sg, sq, var, add, rsqrt, g_mul if gamma_t else None,
                         x_mul[0], m_mul[0], shift, out) if n is not None]
    dtype = gv.dtype(mean)
    eps = float(eps.reshape(()))
    if tied:     # params broadcast over the normalized axes: keep them [C], custom layer
        param_shape = list(np.asarray(weights[0][1]).shape)
        if any(list(np.asarray(w[1]).shape) != param_shape for w in weights):
            return None

        def make(n):
            from tb_varmap.convert.family_layers import BroadcastLayerNorm
            return BroadcastLayerNorm(axes, eps, param_shape, center=beta is not None,
                                      scale=gamma is not None, name=n, dtype=dtype)
        ws = [Weight(a, np.asarray(v), b, note="broadcast over the normalized axes "
                     f"{axes} (BroadcastLayerNorm)") for a, v, _, b in weights]
    else:
        def make(n):
            return keras.layers.LayerNormalization(
                axis=axes if len(axes) > 1 else axes[0], epsilon=eps,
                center=beta is not None, scale=gamma is not None, name=n, dtype=dtype)
        ws = [Weight(a, full, b) for a, _, full, b in weights]

    scope = mean.name.split("/moments/")[0] if "/moments/" in mean.name else mean.name
    return Emit(make, [x], [out.name + ":0"], [n.name for n in nodes], name=scope,
                weights=ws, standard=not tied)


def _fit(value, shape, axes):
    """value broadcast to the normalized axes' shape (Keras LN weight shape), or None."""
    value = np.asarray(value)
    rank = len(shape)
    full = np.ones([1] * rank, value.dtype) if value.ndim == 0 else value.reshape(
        [1] * (rank - value.ndim) + list(value.shape))
    if any(full.shape[d] != 1 for d in range(rank) if d not in axes):
        return None
    target = [shape[a] for a in axes]
    try:
        out = np.broadcast_to(full.reshape([full.shape[a] for a in axes]), target)
    except ValueError:
        return None
    if value.ndim == 0:
        out = np.broadcast_to(value, target)
    return np.ascontiguousarray(out)
