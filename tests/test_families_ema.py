"""Adam + ExponentialMovingAverage model: --weights ema takes the shadow values, raw the
trained ones; the exported model computes with the chosen ones."""
import numpy as np
import pytest

from tb_varmap.demo.families import generate_families, sample_feed


@pytest.fixture(scope="module")
def run_data(tmp_path_factory):
    from tb_varmap.run import RunData

    out = tmp_path_factory.mktemp("ema")
    generate_families(str(out), ["fam_ema"], ["ref"])
    return RunData(str(out), "fam_ema")


def test_ema_weights_use_shadows(run_data):
    from tb_varmap.convert import convert_graph
    from tb_varmap.export_run import variable_bindings
    from tb_varmap.tags import empty_tags
    from tb_varmap.verify import verify

    kinds = {v.name: v.kind for v in run_data.variables()}
    assert kinds["fc1/kernel/ExponentialMovingAverage"] == "ema"
    raw, _ = variable_bindings(run_data, None, empty_tags(), weights="raw")
    ema, notes = variable_bindings(run_data, None, empty_tags(), weights="ema")
    assert sorted(notes["ema"]) == ["fc1/bias", "fc1/kernel", "fc2/bias", "fc2/kernel"]
    for r, e in zip(raw, ema):
        shadow = run_data.read_variable(r.name + "/ExponentialMovingAverage")
        np.testing.assert_array_equal(e.value, shadow)
        assert not np.array_equal(r.value, e.value), r.name    # 4 Adam steps moved them
    conv = convert_graph(run_data.graph_def, ["x"], ["y:0"], ema)
    dense = [lb for lb in conv.layers if lb.keras_class == "Dense"]
    layer = conv.model.get_layer(dense[0].layer)
    np.testing.assert_array_equal(layer.kernel.numpy(),
                                  run_data.read_variable("fc1/kernel/ExponentialMovingAverage"))
    rep = verify(run_data.graph_def, ["x"], ["y:0"], ema, conv, feed=sample_feed("fam_ema"))
    assert rep["passed"], rep["outputs"]


def test_cli_export_weights_ema_is_reported(run_data, tmp_path, capsys):
    import json

    from tb_varmap.cli import main

    logdir = run_data.run_dir.rsplit("/", 1)[0]
    rc = main(["export", "--logdir", logdir, "--run", "fam_ema", "--outputs", "y",
               "--weights", "ema", "--out", str(tmp_path / "m.keras"), "--verify", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["weights"] == "ema"
    assert sorted(report["notes"]["ema"]) == ["fc1/bias", "fc1/kernel", "fc2/bias",
                                              "fc2/kernel"]
    assert report["verification"]["passed"]
