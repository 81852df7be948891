"""`tb-varmap` run as users run it: a real process over real TF-written model dirs."""

import json
import os
import subprocess

import pytest

from tb_varmap import cli
from tb_app import copy_runs

MODELS = ["dense_nobias", "conv_bias", "custom_sigmoid"]


@pytest.fixture
def logdir(tf1_models_dir, tmp_path):
    return copy_runs(tf1_models_dir, tmp_path / "logdir", MODELS)


def tb_varmap(*args):
    """The installed console script in a real process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(["tb-varmap", *args], capture_output=True, text=True, env=env, timeout=300)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_cli(capsys):
    """`tb-varmap` in this process (fast: TensorFlow is imported once)."""

    def run(*args):
        capsys.readouterr()
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def test_runs(logdir):
    result = tb_varmap("runs", "--logdir", logdir, "--json")
    assert result.returncode == 0, result.stderr
    names = {row["run"] for row in json.loads(result.stdout)}
    assert names == {m + suffix for m in MODELS for suffix in ("", "_resource")}


@pytest.mark.parametrize("run", ["dense_nobias", "dense_nobias_resource"])
def test_roles_json_fields(logdir, run, run_cli):
    result = run_cli("roles", "--logdir", logdir, "--run", run, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    for row in rows:
        assert {"variable", "node", "shape", "dtype", "role", "confidence", "source", "trainable"} <= set(row)
    weights = [row for row in rows if row["kind"] == "weight"]
    assert len(weights) == 1
    assert weights[0]["shape"] == [10, 5]
    assert weights[0]["role"] == "dense.kernel"
    assert weights[0]["source"] == "inferred"
    assert weights[0]["trainable"] is True


def test_roles_table(logdir):
    result = tb_varmap("roles", "--logdir", logdir, "--run", "conv_bias")
    assert result.returncode == 0, result.stderr
    assert "conv.kernel" in result.stdout and "conv.bias" in result.stdout


def test_bad_input_exits_2_with_one_line(logdir, run_cli):
    for args in (
        ["roles", "--logdir", logdir, "--run", "nope"],
        ["roles", "--logdir", os.path.join(logdir, "missing"), "--run", "."],
        ["roles", "--logdir", logdir, "--run", "../etc"],
        ["roles", "--logdir", logdir, "--run", "dense_nobias", "--step", "12345"],
        ["tag", "--logdir", logdir, "--run", "custom_sigmoid", "--set", "param=conv.kernel"],
        ["roles"],
    ):
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith("tb-varmap")]
        assert len(lines) == 1, result.stderr
    message = tb_varmap("roles", "--logdir", logdir, "--run", "nope").stderr
    assert len(message.strip().splitlines()) == 1, message
    assert "'nope'" in message


def test_tag_set_and_clear(logdir, run_cli):
    tb_varmap = run_cli
    result = tb_varmap("tag", "--logdir", logdir, "--run", "custom_sigmoid", "--set", "param=constant")
    assert result.returncode == 0, result.stderr
    rows = json.loads(tb_varmap("roles", "--logdir", logdir, "--run", "custom_sigmoid", "--json").stdout)
    param = next(row for row in rows if row["variable"] == "param")
    assert (param["role"], param["source"]) == ("constant", "tag")
    assert tb_varmap("tag", "--logdir", logdir, "--run", "custom_sigmoid", "--clear", "param").returncode == 0
    tags = json.load(open(os.path.join(logdir, "custom_sigmoid", "varmap", "tags.json")))
    assert tags["revision"] == 2 and tags["variables"] == {}
