"""tf_slim resnet_v1 (conv2d_same = Pad + VALID conv, batch_norm, bottlenecks) and a TF1
BERT attention layer (q/k/v dense, masked softmax, layer_norm, GELU in tanh and erf
form), both written by TF itself, converted and verified; GELU maps to Activation("gelu")
and Gelu(approximate=True), and the model reloads with safe_mode on."""
import numpy as np
import pytest

from tb_varmap.demo.families import generate_families, sample_feed

COVERS = ["gelu_erf", "gelu_tanh"]     # for the registry meta-test


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("nets")
    generate_families(str(out), ["fam_slim_resnet", "fam_bert_attention"], ["ref"])
    return str(out)


def _convert_verify(logdir, run, inputs):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    rd = RunData(logdir, run)
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, inputs, ["y:0"], bindings)
    rep = verify(rd.graph_def, inputs, ["y:0"], bindings, conv, feed=sample_feed(run))
    return rd, conv, rep


def test_slim_resnet_all_standard_and_verified(logdir):
    rd, conv, rep = _convert_verify(logdir, "fam_slim_resnet", ["x"])
    assert rep["passed"], rep["outputs"]
    assert conv.report["custom_weights"]["params"] == 0
    classes = [lb.keras_class for lb in conv.layers]
    assert "ZeroPadding2D" in classes            # conv2d_same: explicit Pad + VALID conv
    assert classes.count("BatchNormalization") == 9     # root + 2 x (shortcut + 3)
    roles = rd.roles()
    assert roles["resnet/conv1/BatchNorm/moving_variance"].role == "bn.moving_variance"


def test_bert_attention_gelu_forms(logdir, tmp_path):
    import keras

    rd, conv, rep = _convert_verify(logdir, "fam_bert_attention", ["x", "mask"])
    assert rep["passed"], rep["outputs"]
    assert not conv.report["unsupported"]["nodes"]
    by_class = {}
    for lb in conv.layers:
        by_class.setdefault(lb.keras_class, []).append(lb)
    assert len(by_class["Dense"]) == 6 and len(by_class["Softmax"]) == 1
    (erf,) = by_class["Activation"]
    assert "output/Erf" in erf.tf_nodes and erf.standard
    assert conv.model.get_layer(erf.layer).get_config()["activation"] == "gelu"
    (tanh,) = by_class["Gelu"]
    assert "intermediate/Tanh" in tanh.tf_nodes and not tanh.standard
    assert conv.model.get_layer(tanh.layer).approximate is True
    path = str(tmp_path / "bert.keras")
    conv.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    feed = sample_feed("fam_bert_attention")
    np.testing.assert_array_equal(np.asarray(loaded([feed["x"], feed["mask"]])),
                                  np.asarray(conv.model([feed["x"], feed["mask"]])))


# --- tf_slim.nets beyond resnet_v1: no per-network code, only op handlers and patterns ---

SLIM_NETS = ["fam_slim_resnet_v2", "fam_slim_inception", "fam_slim_mobilenet",
             "fam_slim_inception_v2"]


@pytest.fixture(scope="module")
def slim_logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("slim_nets")
    generate_families(str(out), SLIM_NETS, ["ref"])
    return str(out)


def _classes(conv):
    counts = {}
    for lb in conv.layers:
        counts[lb.keras_class] = counts.get(lb.keras_class, 0) + 1
    return counts


def _all_standard_and_verified(conv, rep):
    assert rep["passed"], ([o for o in rep["outputs"]],
                           [r["layer"] for r in rep["layers"]
                            if r["isolated"]["status"] != "OK"
                            or r["cumulative"]["status"] != "OK"])
    assert rep["gradients"] and all(g["status"] == "OK" for g in rep["gradients"])
    assert not conv.report["unsupported"]["nodes"], conv.report["unsupported"]
    assert conv.report["custom_weights"]["params"] == 0
    assert all(lb.standard for lb in conv.layers)
    by_class = {}
    for row in rep["layers"]:
        by_class.setdefault(row["keras_class"], []).append(row["isolated"]["max_abs"])
    # the same TF kernel runs in Keras: bit-exact; batch norm: fused kernel vs
    # tf.nn.batch_normalization, float32 rounding only
    for cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
                "AveragePooling2D", "GlobalAveragePooling2D", "Concatenate", "Add",
                "Activation", "ZeroPadding2D", "Reshape", "Dense"):
        assert max(by_class.get(cls, [0.0])) == 0.0, (cls, by_class[cls])
    assert max(by_class.get("BatchNormalization", [0.0])) <= 1e-6
    return by_class


def test_slim_resnet_v2_preactivation(slim_logdir):
    rd, conv, rep = _convert_verify(slim_logdir, "fam_slim_resnet_v2", ["x"])
    _all_standard_and_verified(conv, rep)
    counts = _classes(conv)
    # root conv2d_same (Pad + VALID conv) and the unit's 3x3 stride-2 conv2d_same
    assert counts["ZeroPadding2D"] == 2
    # 3 units x (preact + ...) : preact x 3 + conv1/conv2 bn x 3 each + postnorm = 10
    assert counts["BatchNormalization"] == 10
    # pool1 (3x3/2 SAME) and the second unit's subsample shortcut (1x1/2 max_pool)
    assert counts["MaxPooling2D"] == 2 and counts["Add"] == 3
    assert counts["GlobalAveragePooling2D"] == 1 and counts["Reshape"] == 1  # squeeze
    bn = conv.model.get_layer(next(lb.layer for lb in conv.layers
                                   if "resnet_v2/postnorm/FusedBatchNormV3" in lb.tf_nodes))
    assert bn.scale is False and bn.center is True      # slim default: no gamma
    assert bn.epsilon == pytest.approx(1e-5, rel=1e-6)     # resnet_arg_scope epsilon
    roles = rd.roles()
    assert roles["resnet_v2/postnorm/moving_variance"].role == "bn.moving_variance"
    assert roles["resnet_v2/block1/unit_1/bottleneck_v2/preact/beta"].role == "bn.beta"


def test_slim_inception_v3(slim_logdir):
    rd, conv, rep = _convert_verify(slim_logdir, "fam_slim_inception", ["x"])
    _all_standard_and_verified(conv, rep)
    counts = _classes(conv)
    assert counts["Concatenate"] == 15 and counts["AveragePooling2D"] == 10
    assert counts["Conv2D"] == 95 and counts["BatchNormalization"] == 94
    kernels = {conv.model.get_layer(lb.layer).kernel_size for lb in conv.layers
               if lb.keras_class == "Conv2D"}
    assert {(1, 7), (7, 1), (1, 3), (3, 1)} <= kernels
    pools = [conv.model.get_layer(lb.layer) for lb in conv.layers
             if lb.keras_class == "AveragePooling2D"]
    assert any(p.padding == "same" for p in pools)    # TF SAME avg pool excludes padding


def test_slim_inception_v2(slim_logdir):
    rd, conv, rep = _convert_verify(slim_logdir, "fam_slim_inception_v2", ["x"])
    _all_standard_and_verified(conv, rep)
    counts = _classes(conv)
    assert counts["SeparableConv2D"] == 1 and counts["Concatenate"] == 10
    (stem,) = [conv.model.get_layer(lb.layer) for lb in conv.layers
               if lb.keras_class == "SeparableConv2D"]
    assert stem.kernel_size == (7, 7) and stem.strides == (2, 2)
    assert stem.depth_multiplier == 2 and stem.padding == "same"   # min(depth(64) // 3, 8)
    assert any(conv.model.get_layer(lb.layer).padding == "same" for lb in conv.layers
               if lb.keras_class == "MaxPooling2D")


@pytest.fixture(scope="module")
def slim_variants_logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("slim_variants")
    generate_families(str(out), ["fam_slim_resnet_v2", "fam_slim_mobilenet"],
                      ["resource", "tf1"])
    return str(out)


@pytest.mark.parametrize("run", ["fam_slim_resnet_v2_resource", "fam_slim_resnet_v2_tf1",
                                 "fam_slim_mobilenet_resource", "fam_slim_mobilenet_tf1"])
def test_slim_nets_resource_and_tf1_variables(slim_variants_logdir, run):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.run import RunData
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    rd = RunData(slim_variants_logdir, run)
    bindings, _ = variable_bindings(rd, None, empty_tags())
    conv = convert_graph(rd.graph_def, ["x"], ["y:0"], bindings)
    feed = sample_feed(run.rsplit("_", 1)[0])
    rep = verify(rd.graph_def, ["x"], ["y:0"], bindings, conv, feed=feed)
    _all_standard_and_verified(conv, rep)


def test_slim_mobilenet_depthwise(slim_logdir, tmp_path):
    import keras

    rd, conv, rep = _convert_verify(slim_logdir, "fam_slim_mobilenet", ["x"])
    _all_standard_and_verified(conv, rep)
    counts = _classes(conv)
    assert counts["DepthwiseConv2D"] == 1 and counts["SeparableConv2D"] == 1
    assert counts["Dense"] == 1 and counts["GlobalAveragePooling2D"] == 1
    assert counts["Conv2D"] == 3 and counts["BatchNormalization"] == 4
    by_node = {n: lb for lb in conv.layers for n in lb.tf_nodes}
    # rate 2: SpaceToBatchND -> conv -> BatchToSpaceND is one dilated layer
    for node, cls in [("atrous3/Conv2D", "Conv2D"),
                      ("sep2/separable_conv2d/depthwise", "SeparableConv2D")]:
        lb = by_node[node]
        assert lb.keras_class == cls and any("SpaceToBatchND" in n for n in lb.tf_nodes)
        layer = conv.model.get_layer(lb.layer)
        assert layer.dilation_rate == (2, 2) and layer.padding == "same"
    # slim batch_norm(fused=False) without gamma: x * rsqrt + (beta - mean * rsqrt),
    # what Keras runs too: bit-exact
    unfused = by_node["pw1/BatchNorm/batchnorm_1/add_1"]
    assert unfused.keras_class == "BatchNormalization"
    (row,) = [r for r in rep["layers"] if r["layer"] == unfused.layer]
    assert row["isolated"]["max_abs"] == 0.0
    roles = rd.roles()
    assert roles["dw1/depthwise_weights"].role in ("depthwise.kernel", "separable.depthwise")
    # mean * Rsqrt (no gamma) is the mean, not a gamma
    assert roles["pw1/BatchNorm/moving_mean"].role == "bn.moving_mean"
    assert roles["pw1/BatchNorm/moving_variance"].role == "bn.moving_variance"
    assert roles["pw1/BatchNorm/beta"].role == "bn.beta"
    path = str(tmp_path / "mobilenet.keras")
    conv.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = sample_feed("fam_slim_mobilenet")["x"]
    np.testing.assert_array_equal(np.asarray(loaded([x])), np.asarray(conv.model([x])))
