"""The seed's three cases end to end through the CLI: bitwise weights, loading, training."""

import json
import os
import subprocess

import numpy as np
import pytest

from tb_varmap import cli
from tb_app import copy_runs

SEEDS = ["dense_nobias", "conv_bias", "custom_sigmoid"]


@pytest.fixture(scope="module")
def exported(tf1_models_dir, tmp_path_factory):
    """Each seed model (ref and resource variables) exported with --verify once."""
    logdir = tmp_path_factory.mktemp("e2e")
    copy_runs(tf1_models_dir, logdir, SEEDS)
    reports = {}
    for run in sorted(os.listdir(logdir)):
        code = cli.main(["export", "--logdir", str(logdir), "--run", run, "--verify", "--json",
                         "--report", str(logdir / (run + ".report.json"))])
        assert code == 0, run
        reports[run] = json.load(open(logdir / (run + ".report.json")))
    return logdir, reports


def checkpoint_values(model_dir):
    import tensorflow as tf

    prefix = tf.train.latest_checkpoint(str(model_dir))
    reader = tf.train.load_checkpoint(prefix)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def load(path):
    import keras

    import tb_varmap  # noqa: F401

    return keras.saving.load_model(path)  # safe_mode stays on


@pytest.mark.parametrize("run", [s + v for s in SEEDS for v in ("", "_resource")])
def test_weights_are_bitwise_equal_and_verification_passes(exported, run):
    logdir, reports = exported
    report = reports[run]
    assert report["verification"]["passed"] is True
    for output in report["verification"]["outputs"]:
        assert output["max_abs"] == 0.0, output  # Keras runs the same kernels here
    model = load(os.path.join(logdir, run, "varmap", "model.keras"))
    values = checkpoint_values(os.path.join(logdir, run))
    by_variable = {}
    for layer in report["conversion"]["layers"]:
        for entry in layer["variables"]:
            by_variable[entry["variable"]] = (layer["layer"], entry)
    assert by_variable, "no variable was exported"
    weights = {w.path: w for w in model.weights}
    for name, (layer, entry) in by_variable.items():
        weight = weights[entry["weight"]]
        exported_value = np.asarray(weight.numpy())
        assert exported_value.dtype == values[name].dtype
        assert exported_value.tobytes() == values[name].tobytes(), name


def test_dense_and_conv_are_standard_layers(exported):
    _, reports = exported
    classes = lambda run: {l["keras_class"] for l in reports[run]["conversion"]["layers"]}
    assert "Dense" in classes("dense_nobias")
    assert "Conv2D" in classes("conv_bias")
    dense = next(l for l in reports["dense_nobias"]["conversion"]["layers"] if l["keras_class"] == "Dense")
    assert [e["role"] for e in dense["variables"]] == ["dense.kernel"]


@pytest.mark.parametrize("run", ["custom_sigmoid", "custom_sigmoid_resource"])
def test_custom_param_is_trainable_and_fit_changes_it(exported, run):
    import keras

    logdir, reports = exported
    model = load(os.path.join(logdir, run, "varmap", "model.keras"))
    custom = [l for l in reports[run]["conversion"]["layers"] if not l["standard"]]
    assert custom and custom[0]["variables"][0]["variable"] == "param"
    assert [w.path for w in model.trainable_weights] == [custom[0]["variables"][0]["weight"]]
    before = float(model.trainable_weights[0].numpy())
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    model.fit(x, np.zeros((8, 4), "float32"), epochs=1, batch_size=8, verbose=0)
    after = float(model.trainable_weights[0].numpy())
    assert after != before


def test_default_paths_and_no_partial_files(exported):
    logdir, _ = exported
    out_dir = os.path.join(logdir, "conv_bias", "varmap")
    names = set(os.listdir(out_dir))
    assert {"model.keras", "report.json"} <= names
    assert not [n for n in names if n.startswith(".tmp") or n.endswith(".tmp")]


def test_export_console_script_bad_input(exported, tmp_path):
    logdir, _ = exported
    for args, expected in [
        (["--run", "conv_bias", "--outputs", "nope"], "'nope'"),
        (["--run", "conv_bias", "--inputs", "ghost"], "'ghost'"),
        (["--run", "conv_bias", "--step", "777"], "777"),
        (["--run", "missing"], "'missing'"),
        (["--run", "conv_bias", "--tags", str(tmp_path / "none.json")], "none.json"),
    ]:
        result = subprocess.run(["tb-varmap", "export", "--logdir", str(logdir), *args],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        message = [l for l in result.stderr.splitlines() if l.startswith("tb-varmap:")]
        assert len(message) == 1 and expected in message[0], result.stderr[-2000:]


def test_verify_command_on_saved_model(exported, capsys):
    logdir, _ = exported
    code = cli.main(["verify", "--logdir", str(logdir), "--run", "conv_bias", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["verification"]["passed"] is True
    assert report["attempt"] >= 2


def test_verify_catches_a_tampered_model_and_names_the_layer(exported, tmp_path, capsys):
    logdir, reports = exported
    run = "dense_nobias_resource"
    model = load(os.path.join(logdir, run, "varmap", "model.keras"))
    dense = next(l for l in reports[run]["conversion"]["layers"] if l["keras_class"] == "Dense")
    kernel = next(w for w in model.weights if w.path == dense["variables"][0]["weight"])
    kernel.assign(kernel.numpy() * 1.01)
    tampered = str(tmp_path / "tampered.keras")
    model.save(tampered)
    code = cli.main(["verify", "--logdir", str(logdir), "--run", run, "--model", tampered, "--json"])
    verification = json.loads(capsys.readouterr().out)["verification"]
    assert code == 1
    assert verification["passed"] is False
    row = next(r for r in verification["layers"] if r["layer"] == dense["layer"])
    assert row["isolated"]["status"] == "INACCURATE"
