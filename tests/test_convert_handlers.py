"""Each handler on a real tf.compat.v1 graph: converted model vs TF session, weights
byte-equal. COVERS lists the registry entries these cases exercise (see
test_convert_registry.py)."""

import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.convert import convert_graph
from tb_varmap.convert.testing import bindings_from_graph, check_weights, run_model

tf1 = tf.compat.v1
COVERS = set()
CASES = {}


def case(*ops, tol=0.0):
    """Register a graph-building case covering `ops`. tol=0.0 means bit-exact."""
    def deco(fn):
        COVERS.update(ops)
        CASES[fn.__name__] = (fn, tol)
        return fn
    return deco


def var(name, shape, resource=True, seed=0, positive=False):
    init = tf1.random_uniform_initializer(0.1, 2.0, seed=seed) if positive else \
        tf1.random_normal_initializer(seed=seed)
    return tf1.get_variable(name, shape, initializer=init, use_resource=resource)


def ph(shape, name="x", dtype=tf.float32):
    return tf1.placeholder(dtype, [None] + list(shape), name=name)


# --- dense ---------------------------------------------------------------------------
@case("MatMul", "BiasAdd", "Relu")
def dense_resource():
    x = ph([6])
    with tf1.variable_scope("fc1"):
        y = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, var("kernel", [6, 4])),
                                      var("bias", [4], seed=1)))
    return [x], [y], {"Dense": 1}


@case("AddV2", "Tanh")
def dense_ref():
    x = ph([5])
    with tf1.variable_scope("fc"):
        y = tf.tanh(tf.matmul(x, var("w", [5, 3], resource=False))
                    + var("b", [3], False, seed=2))
    return [x], [y], {"Dense": 1}


# MatMul(transpose_b) reads the kernel in another memory order than MatMul on the
# transposed copy Keras holds: same products, other summation order (~1 ulp).
@case(tol=1e-6)
def dense_transpose_b():
    x = ph([5])
    with tf1.variable_scope("fc"):
        y = tf.matmul(x, var("w", [3, 5], resource=False), transpose_b=True)
    return [x], [y], {"Dense": 1}


@case("BatchMatMulV2", "Softmax")
def dense_batched():
    x = ph([7, 4])
    with tf1.variable_scope("proj"):
        y = tf.matmul(x, var("kernel", [4, 3]))                    # BatchMatMulV2
    return [x], [tf.nn.softmax(y)], {"Dense": 1}


# Keras' Dense runs BatchMatMulV2; the graph's BatchMatMulV3 goes through another
# (oneDNN-rewritten) kernel in a Session: float32 rounding differences only.
@case("BatchMatMulV3", tol=1e-5)
def dense_batched_v3():
    x = ph([7, 3])
    with tf1.variable_scope("proj2"):
        z = tf.raw_ops.BatchMatMulV3(x=x, y=var("kernel", [3, 5]), Tout=tf.float32)
    return [x], [z], {"Dense": 1}


@case("BatchMatMul")
def matmul_two_tensors():
    x = ph([3, 4])
    y = tf.raw_ops.BatchMatMul(x=x, y=tf.transpose(x, [0, 2, 1]), name="gram")
    return [x], [y], {"VarMapOp": 1}


# --- conv ----------------------------------------------------------------------------
@case("Conv2D", "Relu6")
def conv_same_strided():
    x = ph([9, 9, 3])
    with tf1.variable_scope("conv1"):
        y = tf.nn.conv2d(x, var("kernel", [3, 3, 3, 8]), [1, 2, 2, 1], "SAME")
        y = tf.nn.relu6(tf.nn.bias_add(y, var("bias", [8], seed=3)))
    with tf1.variable_scope("conv2"):
        z = tf.nn.conv2d(y, var("kernel", [3, 3, 8, 4], resource=False),
                         [1, 1, 1, 1], "VALID", dilations=[1, 2, 2, 1])
    return [x], [z], {"Conv2D": 2}


@case()
def conv_explicit_padding():
    x = ph([8, 8, 2])
    with tf1.variable_scope("padded"):
        y = tf.nn.conv2d(x, var("kernel", [3, 3, 2, 4]), [1, 1, 1, 1],
                         [[0, 0], [2, 1], [1, 0], [0, 0]])
        y = y + var("bias", [4], seed=4)
    return [x], [y], {"Sequential": 1}


@case("Conv2DBackpropInput")
def conv_transpose():
    x = ph([5, 5, 4])
    with tf1.variable_scope("up"):
        k = var("kernel", [3, 3, 6, 4])
        shape = tf.stack([tf.shape(x)[0], 10, 10, 6])
        y = tf.nn.conv2d_transpose(x, k, shape, [1, 2, 2, 1], "SAME")
        y = tf.nn.bias_add(y, var("bias", [6], seed=5))
    with tf1.variable_scope("up2"):
        k2 = var("kernel", [3, 3, 2, 6], seed=6)
        shape2 = tf.stack([tf.shape(y)[0], 22, 22, 2])           # needs output_padding 1
        z = tf.nn.conv2d_transpose(y, k2, shape2, [1, 2, 2, 1], "VALID")
    return [x], [z], {"Conv2DTranspose": 2}


@case("DepthwiseConv2dNative", "Elu")
def depthwise_and_separable():
    x = ph([8, 8, 3])
    with tf1.variable_scope("dw"):
        y = tf.nn.depthwise_conv2d(x, var("depthwise_kernel", [3, 3, 3, 2]),
                                   [1, 1, 1, 1], "SAME")
        y = tf.nn.bias_add(y, var("bias", [6], seed=7))
    with tf1.variable_scope("sep"):
        z = tf.nn.separable_conv2d(y, var("depthwise_kernel", [3, 3, 6, 1], seed=8),
                                   var("pointwise_kernel", [1, 1, 6, 5], seed=9),
                                   [1, 2, 2, 1], "VALID")
        z = tf.nn.elu(tf.nn.bias_add(z, var("bias", [5], seed=10)))
    return [x], [z], {"DepthwiseConv2D": 1, "SeparableConv2D": 1}


# Atrous convs as TF wrote them before kernels took dilations (slim conv2d(rate=2),
# atrous_conv2d, depthwise/separable with rate): SpaceToBatchND → VALID conv →
# BatchToSpaceND. 9x9 inputs need the extra pad/crop that makes H divisible by the rate.
@case("atrous_conv")
def atrous_convs():
    x = ph([9, 9, 3])
    with tf1.variable_scope("same"):
        a = tf.nn.atrous_conv2d(x, var("kernel", [3, 3, 3, 4]), 2, "SAME")
        a = tf.nn.relu(tf.nn.bias_add(a, var("bias", [4], seed=1)))
    with tf1.variable_scope("valid"):
        b = tf.nn.convolution(a, var("kernel", [3, 2, 4, 4], seed=2), padding="VALID",
                              dilations=[2, 3])
    with tf1.variable_scope("dw"):
        c = tf.nn.depthwise_conv2d(a, var("depthwise_kernel", [3, 3, 4, 2], seed=3),
                                   [1, 1, 1, 1], "SAME", dilations=[2, 2])
    with tf1.variable_scope("sep"):
        d = tf.nn.separable_conv2d(a, var("depthwise_kernel", [3, 3, 4, 1], seed=4),
                                   var("pointwise_kernel", [1, 1, 4, 5], seed=5),
                                   [1, 1, 1, 1], "SAME", dilations=[3, 3])
        d = tf.nn.bias_add(d, var("bias", [5], seed=6))
    # explicit padding that is neither SAME nor VALID: pad, then a dilated VALID conv
    with tf1.variable_scope("padded"):
        k = var("kernel", [3, 3, 4, 2], seed=7)
        e = tf.compat.v1.space_to_batch_nd(a, [2, 2], [[1, 2], [0, 1]])
        e = tf.nn.conv2d(e, k, [1, 1, 1, 1], "VALID")
        e = tf.compat.v1.batch_to_space_nd(e, [2, 2], [[0, 0], [0, 1]])
    return [x], [b, c, d, e], {"Conv2D": 2, "DepthwiseConv2D": 1, "SeparableConv2D": 1,
                               "Sequential": 1}


# --- batch norm ----------------------------------------------------------------------
# FusedBatchNorm's CPU kernel folds the terms in another order than
# tf.nn.batch_normalization (what Keras runs): float32 rounding only, ~1e-6.
@case("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", tol=1e-5)
def batch_norm_fused():
    x = ph([4, 4, 3])
    ys = x
    for i, op in enumerate(["FusedBatchNormV3", "FusedBatchNormV2", "FusedBatchNorm"]):
        with tf1.variable_scope(f"bn{i}"):
            gamma = var("gamma", [3], seed=i, positive=True) if i != 1 else \
                tf.ones([3])                                       # slim: no gamma
            beta = var("beta", [3], seed=10 + i)
            mean = var("moving_mean", [3], seed=20 + i)
            variance = var("moving_variance", [3], seed=30 + i, positive=True)
            ys = getattr(tf.raw_ops, op)(x=ys, scale=gamma, offset=beta, mean=mean,
                                          variance=variance, epsilon=0.001 * (i + 1),
                                          is_training=False)[0]
    return [x], [ys], {"BatchNormalization": 3}


@case("batchnorm_unfused")
def batch_norm_unfused():
    x = ph([3, 3, 4])
    with tf1.variable_scope("bn"):
        y = tf.nn.batch_normalization(
            x, var("moving_mean", [4]), var("moving_variance", [4], seed=1, positive=True),
            var("beta", [4], seed=2), var("gamma", [4], seed=3, positive=True), 1e-3)
    with tf1.variable_scope("bn_plain"):
        z = tf.nn.batch_normalization(
            y, var("moving_mean", [4], seed=4),
            var("moving_variance", [4], seed=5, positive=True), None, None, 1e-5)
    return [x], [z], {"BatchNormalization": 2}


# --- activations ---------------------------------------------------------------------
@case("Selu", "Sigmoid", "Softplus", "LeakyRelu")
def activations():
    x = ph([10])
    outs = [tf.nn.selu(x), tf.sigmoid(x), tf.nn.softplus(x),
            tf.nn.leaky_relu(x, alpha=0.3), tf.nn.relu(x), tf.nn.softmax(x), tf.tanh(x),
            tf.nn.elu(x), tf.nn.relu6(x)]
    return [x], outs, {"Activation": 7, "LeakyReLU": 1, "Softmax": 1}


# --- pooling -------------------------------------------------------------------------
@case("MaxPool", "AvgPool")
def pooling():
    x = ph([9, 9, 2])
    y = tf.nn.max_pool2d(x, 3, 2, "SAME")
    z = tf.nn.avg_pool2d(y, 2, 2, "VALID")
    w = tf.nn.avg_pool2d(x, 2, 2, "SAME")
    return [x], [z, w], {"MaxPooling2D": 1, "AveragePooling2D": 2}


# TF's SAME pooling leaves the padding out: an edge average divides by the in-image count
# (not count_include_pad), an edge max ignores the padding (inputs all negative here, so a
# zero pad would show). Keras' padding="same" runs the same TF kernels: bit-exact.
@case()
def pooling_same_edges():
    x = ph([8, 8, 3])
    neg = tf.sigmoid(x) - tf.nn.softplus(x)          # < 0 everywhere, standard layers
    outs = [tf.nn.avg_pool2d(x, 3, 1, "SAME"), tf.nn.avg_pool2d(x, 3, 2, "SAME"),
            tf.nn.max_pool2d(neg, 3, 2, "SAME"), tf.nn.max_pool2d(neg, [1, 3], 1, "SAME")]
    return [x], outs, {"AveragePooling2D": 2, "MaxPooling2D": 2, "Subtract": 1}


# --- elementwise ---------------------------------------------------------------------
@case("Add", "Sub", "Mul", "RealDiv", "Maximum", "Minimum")
def elementwise():
    x = ph([6])
    a, b = tf.nn.relu(x), tf.sigmoid(x)
    outs = [tf.raw_ops.Add(x=a, y=b), a - b, a * b, a / b, tf.maximum(a, b),
            tf.minimum(a, b), a + b, x * 3.0, x / 2.0]
    return [x], outs, {"Add": 2, "Subtract": 1, "Multiply": 1, "Maximum": 1,
                       "Minimum": 1, "VarMapOp": 3}


# --- shape ---------------------------------------------------------------------------
@case("Reshape", "Transpose", "ConcatV2", "Squeeze", "ExpandDims")
def shape_ops():
    x = ph([4, 3])
    flat = tf.reshape(x, tf.stack([tf.shape(x)[0], -1]), name="flatten")
    flat2 = tf.reshape(x, [-1, 12], name="flat2")
    everything = tf.reshape(x, [-1], name="all")                 # touches batch: custom
    tr = tf.transpose(x, [0, 2, 1], name="tr")
    cat = tf.concat([flat, flat2], axis=1, name="cat")
    sq = tf.squeeze(tf.expand_dims(x, -1, name="ex"), [3], name="sq")
    return [x], [cat, everything, tr, sq], {"Reshape": 4, "Permute": 1,
                                            "Concatenate": 1, "VarMapOp": 1}


@case("Concat")
def concat_v1():
    x = ph([3])
    y = tf.raw_ops.Concat(concat_dim=1, values=[tf.nn.relu(x), tf.tanh(x)], name="cat")
    return [x], [y], {"Concatenate": 1}


@case("Pad", "PadV2", "MirrorPad")
def padding():
    x = ph([4, 4, 2])
    y = tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]], name="pad")
    z = tf.raw_ops.PadV2(input=y, paddings=[[0, 0], [1, 1], [1, 1], [0, 0]],
                         constant_values=0.0, name="pad2")
    w = tf.pad(z, [[0, 0], [1, 1], [1, 1], [1, 0]], mode="REFLECT", name="mirror")
    return [x], [w], {"ZeroPadding2D": 2, "VarMapOp": 1}


# --- reductions ----------------------------------------------------------------------
@case("Mean", "Sum", "Max", "Min", "Prod")
def reductions():
    x = ph([3, 4, 5])
    outs = [tf.reduce_mean(x, [1, 2]), tf.reduce_mean(x, [1, 2], keepdims=True),
            tf.reduce_mean(x, -1), tf.reduce_sum(x, 1), tf.reduce_max(x, -1),
            tf.reduce_min(x, [1, 2]), tf.reduce_prod(x, 3)]
    return [x], outs, {"GlobalAveragePooling2D": 2, "VarMapOp": 5}


# --- identity & dropout --------------------------------------------------------------
@case("Identity", "StopGradient", "Snapshot", "PreventGradient")
def identities():
    x = ph([3])
    y = tf.raw_ops.PreventGradient(input=tf.raw_ops.Snapshot(
        input=tf.stop_gradient(tf.identity(x))))
    return [x], [tf.nn.relu(y, name="out")], {"Activation": 1}


def plain_session(graph):
    """A Session without grappler: its remapper fuses e.g. MatMul+BiasAdd+Tanh into one
    oneDNN kernel that rounds differently from the separate ops Keras runs."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    rewrite = rewriter_config_pb2.RewriterConfig(disable_meta_optimizer=True)
    config = config_pb2.ConfigProto(graph_options=config_pb2.GraphOptions(
        rewrite_options=rewrite))
    return tf1.Session(graph=graph, config=config)


def run_case(name):
    fn, tol = CASES[name]
    g = tf.Graph()
    with g.as_default():
        tf1.set_random_seed(1)
        inputs, outputs, expect = fn()
        sess = plain_session(g)
        sess.run(tf1.global_variables_initializer())
        rng = np.random.RandomState(0)
        feeds = [rng.randn(3, *t.shape.as_list()[1:]).astype(np.float32) for t in inputs]
        ref = sess.run(outputs, dict(zip(inputs, feeds)))
        variables = bindings_from_graph(g, sess)
    conv = convert_graph(g.as_graph_def(), [t.op.name for t in inputs],
                         [t.name for t in outputs], variables)
    got = run_model(conv.model, feeds)
    for r, k, t in zip(ref, got, outputs):
        assert r.shape == k.shape and r.dtype == k.dtype, t.name
        if tol == 0.0:
            assert np.array_equal(r, k), f"{t.name}: max abs {np.abs(r - k).max()}"
        else:
            np.testing.assert_allclose(k, r, atol=tol, rtol=tol, err_msg=t.name)
    check_weights(conv, variables)
    counts = {}
    for lb in conv.layers:
        counts[lb.keras_class] = counts.get(lb.keras_class, 0) + 1
    for cls, n in expect.items():
        assert counts.get(cls, 0) == n, (cls, counts, conv.report["unsupported"])
    assert conv.report["unsupported"]["nodes"] == [], conv.report["unsupported"]
    return conv, g, sess, variables


@pytest.mark.parametrize("name", sorted(CASES))
def test_handler(name):
    run_case(name)


COVERS.add("dropout")


def test_dropout_becomes_inference_dropout():
    g = tf.Graph()
    with g.as_default():
        x = ph([8])
        h = tf.nn.relu(x, name="h")
        d = tf1.nn.dropout(h, keep_prob=0.75)                     # TF >= 1.13 form
        with tf.name_scope("dropout_1"):                            # TF1 classic form
            keep = tf1.placeholder_with_default(1.0, [], name="keep_prob")
            mask = tf.floor(keep + tf.random.uniform(tf.shape(d)))
            d2 = tf.math.divide(d, keep) * mask
        tf.identity(d2, name="y")
        sess = tf1.Session(graph=g)
        feed = np.random.RandomState(1).randn(4, 8).astype(np.float32)
        ref = sess.run(h, {x: feed})           # dropout off = the tensor before it
    conv = convert_graph(g.as_graph_def(), ["x"], ["y:0"], [])
    (got,) = run_model(conv.model, [feed])
    assert np.array_equal(got, ref)
    drop = [lb for lb in conv.layers if lb.keras_class == "Dropout"]
    assert [lb.tf_inputs for lb in drop] == [["h:0"], [drop[0].tf_outputs[0]]]
    assert abs(conv.model.get_layer(drop[0].layer).rate - 0.25) < 1e-6
    assert conv.model.get_layer(drop[1].layer).rate == 0.0      # keep_prob is fed
    assert conv.report["unsupported"]["nodes"] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_round_trip(name, tmp_path):
    """Every case saves to .keras and loads with safe_mode, giving the same outputs."""
    import keras

    import tb_varmap  # noqa: F401  (registers VarMapOp)

    conv, g, sess, variables = run_case(name)
    rng = np.random.RandomState(7)
    feeds = [rng.randn(2, *t.shape[1:]).astype(np.float32) for t in conv.model.inputs]
    before = run_model(conv.model, feeds)
    path = str(tmp_path / f"{name}.keras")
    conv.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    after = run_model(loaded, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    # (paths of weights nested in a Sequential lose their parent prefix on load: Keras)
    assert [np.asarray(w.numpy()).tobytes() for w in loaded.trainable_weights] == \
        [np.asarray(w.numpy()).tobytes() for w in conv.model.trainable_weights]


COVERS.update({"GatherV2", "Gather", "ResourceGather"})


@pytest.mark.parametrize("kind", ["GatherV2", "Gather", "ResourceGather"])
def test_embedding_lookup(kind):
    g = tf.Graph()
    with g.as_default():
        ids = tf1.placeholder(tf.int32, [None, 5], name="ids")
        with tf1.variable_scope("emb"):
            table = var("table", [11, 4], resource=kind == "ResourceGather")
            if kind == "Gather":
                y = tf.raw_ops.Gather(params=table, indices=ids, name="lookup")
            else:
                y = tf.nn.embedding_lookup(table, ids, name="lookup")
        out = tf.reduce_mean(y, 1, name="pooled")
        sess = plain_session(g)
        sess.run(tf1.global_variables_initializer())
        feed = np.random.RandomState(0).randint(0, 11, (3, 5)).astype(np.int32)
        ref = sess.run(out, {ids: feed})
        variables = bindings_from_graph(g, sess)
    assert kind in {n.op for n in g.as_graph_def().node}
    conv = convert_graph(g.as_graph_def(), ["ids"], ["pooled:0"], variables)
    (got,) = run_model(conv.model, [feed])
    assert np.array_equal(got, ref)
    check_weights(conv, variables)
    assert [lb.keras_class for lb in conv.layers][0] == "Embedding"
    assert conv.report["unsupported"]["nodes"] == []


def test_partitioned_mod_lookup_becomes_one_embedding():
    """The glue binds a partitioned variable once, with the logical (id-ordered) value;
    the mod-partitioned lookup becomes ONE Embedding holding exactly that value."""
    from tb_varmap.convert import VariableBinding

    g = tf.Graph()
    with g.as_default():
        ids = tf1.placeholder(tf.int64, [None, 4], name="ids")
        table = tf1.get_variable("emb", [10, 3], partitioner=tf1.fixed_size_partitioner(3),
                                 initializer=tf1.random_normal_initializer(seed=3))
        out = tf.identity(tf1.nn.embedding_lookup(table, ids, partition_strategy="mod"),
                          name="out")
        logical = tf1.nn.embedding_lookup(table, tf.range(10, dtype=tf.int64),
                                          partition_strategy="mod")
        sess = plain_session(g)
        sess.run(tf1.global_variables_initializer())
        feed = np.random.RandomState(1).randint(0, 10, (2, 4))
        ref = sess.run(out, {ids: feed})
        parts = [v for v in table]                      # PartitionedVariable parts
        reads = [t for b in bindings_from_graph(g, sess) for t in b.read_tensors]
        binding = VariableBinding("emb", reads, "embedding.table", True,
                                  sess.run(logical))
        stored = sess.run(parts)
    conv = convert_graph(g.as_graph_def(), ["ids"], ["out:0"], [binding])
    (got,) = run_model(conv.model, [feed])
    assert np.array_equal(got, ref)
    weights = {v["variable"]: v for lb in conv.layers for v in lb.variables}
    assert sorted(weights) == ["emb"]
    assert [lb.keras_class for lb in conv.layers if lb.variables] == ["Embedding"]
    by_path = {w.path: np.asarray(w.numpy()) for w in conv.model.weights}
    assert by_path[weights["emb"]["weight"]].tobytes() == binding.value.tobytes()
    # row i of the logical table is id i: part i % 3, row i // 3 under "mod"
    for i in range(10):
        assert np.array_equal(binding.value[i], stored[i % 3][i // 3])
    assert conv.report["unused_variables"] == []
