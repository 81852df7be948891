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
