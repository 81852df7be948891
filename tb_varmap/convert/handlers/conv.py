"""Conv2D, Conv2DBackpropInput, DepthwiseConv2dNative (+ 1×1 Conv2D → separable),
each with an optional following bias and activation; the atrous form
SpaceToBatchND → conv → BatchToSpaceND → the conv with dilation_rate."""

from tb_varmap.convert.handlers.common import (fuse_tail, hw, nhwc, sole_consumer,
                                               source, weight)
from tb_varmap.convert.handlers.generic import layer_hint, op_emit
from tb_varmap.convert.registry import Emit, Unsupported, register, register_pattern

CONV_ROLES = {"conv.kernel"}
TRANSPOSE_ROLES = {"conv_transpose.kernel", "conv.kernel"}
DEPTHWISE_ROLES = {"depthwise.kernel", "separable.depthwise"}
POINTWISE_ROLES = {"separable.pointwise", "conv.kernel"}


def _padding(gv, node):
    pad = gv.attr(node, "padding")
    if pad in ("SAME", "VALID"):
        return pad.lower(), None
    if pad == "EXPLICIT":
        p = gv.attr(node, "explicit_paddings", [])
        if len(p) != 8 or any(p[i] for i in (0, 1, 6, 7)):
            raise Unsupported(f"node {node.name!r}: explicit_paddings {p} pad batch or "
                              "channels")
        return "valid", ((p[2], p[3]), (p[4], p[5]))
    raise Unsupported(f"node {node.name!r}: padding {pad!r}")


def _tail_weights(weights, bias, index=None):
    if bias is not None:
        weights.append(weight("bias" if index is None else index, bias))
    return weights


@register("Conv2D")
def conv2d(gv, node):
    import keras

    nhwc(gv, node)
    x, f = gv.inputs_of(node)
    src = source(gv, f, CONV_ROLES)
    if not gv.is_live(x) or src is None or src[0].ndim != 4:
        return op_emit(gv, node)
    padding, explicit = _padding(gv, node)
    strides = hw(gv.attr(node, "strides"), "strides", node)
    dil = hw(gv.attr(node, "dilations", [1, 1, 1, 1]), "dilations", node)
    kh, kw, _, filters = src[0].shape
    last, more, bias, act = fuse_tail(gv, node, filters)
    dtype = src[0].dtype.name

    def conv(n):
        return keras.layers.Conv2D(filters, (kh, kw), strides=strides, padding=padding,
                                   dilation_rate=dil, activation=act,
                                   use_bias=bias is not None, name=n, dtype=dtype)

    if explicit is None:
        make = conv
        weights = _tail_weights([weight("kernel", src)], bias)
    else:
        def make(n):
            return keras.Sequential([keras.layers.ZeroPadding2D(explicit, name=n + "_pad",
                                                                dtype=dtype),
                                     conv(n + "_conv")], name=n)
        weights = _tail_weights([weight(0, src)], bias, index=1)
    return Emit(make, [x], [last.name + ":0"], [node.name] + more,
                name=layer_hint(gv, node, scoped=True), weights=weights)


@register("Conv2DBackpropInput")
def conv2d_transpose(gv, node):
    import keras

    nhwc(gv, node)
    sizes, f, x = gv.inputs_of(node)
    src = source(gv, f, TRANSPOSE_ROLES)
    if not gv.is_live(x) or src is None or src[0].ndim != 4:
        return op_emit(gv, node)
    padding, explicit = _padding(gv, node)
    if explicit is not None:
        raise Unsupported(f"node {node.name!r}: explicit padding in a transposed conv")
    strides = hw(gv.attr(node, "strides"), "strides", node)
    dil = hw(gv.attr(node, "dilations", [1, 1, 1, 1]), "dilations", node)
    kh, kw, filters, _ = src[0].shape
    out_pad = _output_padding(gv, node, sizes, x, (kh, kw), strides, dil, padding)
    last, more, bias, act = fuse_tail(gv, node, filters)
    dtype = src[0].dtype.name

    def make(n):
        return keras.layers.Conv2DTranspose(
            filters, (kh, kw), strides=strides, padding=padding, output_padding=out_pad,
            dilation_rate=dil, activation=act, use_bias=bias is not None, name=n,
            dtype=dtype)

    return Emit(make, [x], [last.name + ":0"], [node.name] + more,
                name=layer_hint(gv, node, scoped=True),
                weights=_tail_weights([weight("kernel", src)], bias))


def _output_padding(gv, node, sizes, x, ksize, strides, dil, padding):
    """Keras output_padding reproducing the graph's output size (None = Keras default)."""
    target = gv.partial(sizes)
    if not isinstance(target, list) or len(target) != 4:
        target = gv.shape(node.name + ":0")
    in_shape = gv.shape(x)
    if not target or not in_shape or None in target[1:3] or None in in_shape[1:3]:
        return None
    pads, default = [], True
    for i in range(2):
        k = (ksize[i] - 1) * dil[i] + 1
        s, n = strides[i], in_shape[1 + i]
        keras_len = n * s if padding == "same" else n * s + max(k - s, 0)
        default &= keras_len == target[1 + i]
        pad = k // 2 if padding == "same" else 0
        pads.append(target[1 + i] - ((n - 1) * s + k - 2 * pad))
    if default:
        return None
    if any(p < 0 or p >= s for p, s in zip(pads, strides)):
        raise Unsupported(f"node {node.name!r}: output size {target} is not reachable "
                          "with Keras output_padding")
    return tuple(pads)


@register("DepthwiseConv2dNative")
def depthwise(gv, node):
    import keras

    nhwc(gv, node)
    x, f = gv.inputs_of(node)
    src = source(gv, f, DEPTHWISE_ROLES)
    if not gv.is_live(x) or src is None or src[0].ndim != 4:
        return op_emit(gv, node)
    padding, explicit = _padding(gv, node)
    if explicit is not None:
        raise Unsupported(f"node {node.name!r}: explicit padding in a depthwise conv")
    strides = hw(gv.attr(node, "strides"), "strides", node)
    dil = hw(gv.attr(node, "dilations", [1, 1, 1, 1]), "dilations", node)
    kh, kw, _, mult = src[0].shape
    dtype = src[0].dtype.name
    pw = _pointwise(gv, node)
    if pw is not None:
        pw_node, pw_src = pw
        filters = pw_src[0].shape[3]
        last, more, bias, act = fuse_tail(gv, pw_node, filters)

        def make(n):
            return keras.layers.SeparableConv2D(
                filters, (kh, kw), strides=strides, padding=padding, dilation_rate=dil,
                depth_multiplier=mult, activation=act, use_bias=bias is not None,
                name=n, dtype=dtype)

        weights = _tail_weights([weight("depthwise_kernel", src),
                                 weight("pointwise_kernel", pw_src)], bias)
        return Emit(make, [x], [last.name + ":0"], [node.name, pw_node.name] + more,
                    name=layer_hint(gv, pw_node, scoped=True), weights=weights)
    last, more, bias, act = fuse_tail(gv, node, src[0].shape[2] * mult)

    def make(n):
        return keras.layers.DepthwiseConv2D(
            (kh, kw), strides=strides, padding=padding, depth_multiplier=mult,
            dilation_rate=dil, activation=act, use_bias=bias is not None, name=n,
            dtype=dtype)

    return Emit(make, [x], [last.name + ":0"], [node.name] + more,
                name=layer_hint(gv, node, scoped=True),
                weights=_tail_weights([weight("kernel", src)], bias))


def _pointwise(gv, node):
    """The 1×1, stride 1, VALID Conv2D of tf.nn.separable_conv2d right after `node`."""
    nxt = sole_consumer(gv, node)
    if nxt is None or nxt.op != "Conv2D" or gv.inputs_of(nxt)[0] != node.name + ":0":
        return None
    if gv.attr(nxt, "padding") != "VALID" or gv.attr(nxt, "strides") != [1, 1, 1, 1] \
            or gv.attr(nxt, "dilations", [1, 1, 1, 1]) != [1, 1, 1, 1] \
            or gv.attr(nxt, "data_format", "NHWC") != "NHWC":
        return None
    try:
        src = source(gv, gv.inputs_of(nxt)[1], POINTWISE_ROLES)
    except Unsupported:
        return None
    if src is None or src[0].shape[:2] != (1, 1):
        return None
    return nxt, src


@register_pattern("atrous_conv", ops=("SpaceToBatchND",))
def atrous_conv(gv, node):
    """SpaceToBatchND(x, [r, r], pads) → Conv2D | DepthwiseConv2dNative (VALID, stride 1)
    [→ 1×1 pointwise Conv2D after the BatchToSpaceND: separable] → BatchToSpaceND([r, r],
    crops): how tf.nn.convolution / atrous_conv2d / depthwise_conv2d with rate > 1 (slim
    conv2d(rate=r), DeepLab's output_stride) ran before kernels took dilations. Equal to
    the conv with dilation r on x padded by pads - crops: padding "same" or "valid" when
    that is what the pads are, else ZeroPadding2D + "valid"."""
    import keras

    x, block_t, pads_t = gv.inputs_of(node)
    if not gv.is_live(x) or gv.is_live(block_t) or gv.is_live(pads_t):
        return None
    conv = sole_consumer(gv, node)
    if conv is None or conv.op not in ("Conv2D", "DepthwiseConv2dNative") \
            or gv.inputs_of(conv)[0] != node.name + ":0" \
            or gv.attr(conv, "padding") != "VALID" \
            or gv.attr(conv, "strides") != [1, 1, 1, 1] \
            or gv.attr(conv, "dilations", [1, 1, 1, 1]) != [1, 1, 1, 1] \
            or gv.attr(conv, "data_format", "NHWC") != "NHWC":
        return None
    b2s = sole_consumer(gv, conv)
    if b2s is None or b2s.op != "BatchToSpaceND" or gv.inputs_of(b2s)[0] != conv.name + ":0":
        return None
    _, block2_t, crops_t = gv.inputs_of(b2s)
    if gv.is_live(block2_t) or gv.is_live(crops_t):
        return None
    block = gv.static(block_t).reshape(-1).tolist()
    pads, crops = gv.static(pads_t).tolist(), gv.static(crops_t).tolist()
    if len(block) != 2 or gv.static(block2_t).reshape(-1).tolist() != block \
            or len(pads) != 2 or len(crops) != 2:
        return None
    eff = [(p[0] - c[0], p[1] - c[1]) for p, c in zip(pads, crops)]
    if any(v < 0 for e in eff for v in e):
        return None
    depthwise = conv.op == "DepthwiseConv2dNative"
    try:
        src = source(gv, gv.inputs_of(conv)[1], DEPTHWISE_ROLES if depthwise else CONV_ROLES)
    except Unsupported:
        return None
    if src is None or src[0].ndim != 4:
        return None
    kh, kw, cin, out = src[0].shape
    total = [(k - 1) * r for k, r in zip((kh, kw), block)]
    if all(e == (t // 2, t - t // 2) for e, t in zip(eff, total)):
        padding, explicit = "same", None
    else:
        padding, explicit = "valid", (None if eff == [(0, 0), (0, 0)] else tuple(eff))
    dil, dtype = tuple(block), src[0].dtype.name
    covered = [node.name, conv.name, b2s.name]
    pw = _pointwise(gv, b2s) if depthwise else None
    if pw is not None:
        pw_node, pw_src = pw
        filters = pw_src[0].shape[3]
        last, more, bias, act = fuse_tail(gv, pw_node, filters)
        covered.append(pw_node.name)
        kernels = [("depthwise_kernel", src), ("pointwise_kernel", pw_src)]
        hint = pw_node

        def layer(n):
            return keras.layers.SeparableConv2D(
                filters, (kh, kw), padding=padding, dilation_rate=dil, depth_multiplier=out,
                activation=act, use_bias=bias is not None, name=n, dtype=dtype)
    else:
        filters = cin * out if depthwise else out
        last, more, bias, act = fuse_tail(gv, b2s, filters)
        kernels, hint = [("kernel", src)], conv

        def layer(n):
            if depthwise:
                return keras.layers.DepthwiseConv2D(
                    (kh, kw), padding=padding, depth_multiplier=out, dilation_rate=dil,
                    activation=act, use_bias=bias is not None, name=n, dtype=dtype)
            return keras.layers.Conv2D(filters, (kh, kw), padding=padding,
                                       dilation_rate=dil, activation=act,
                                       use_bias=bias is not None, name=n, dtype=dtype)

    if explicit is None:
        make = layer
        weights = _tail_weights([weight(a, k) for a, k in kernels], bias)
    else:
        def make(n):
            return keras.Sequential([keras.layers.ZeroPadding2D(explicit, name=n + "_pad",
                                                                dtype=dtype),
                                     layer(n + "_conv")], name=n)
        weights = _tail_weights([weight(i, k) for i, (_, k) in enumerate(kernels)], bias,
                                index=len(kernels))
    return Emit(make, [x], [last.name + ":0"], covered + more,
                name=layer_hint(gv, hint, scoped=True), weights=weights)
