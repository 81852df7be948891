"""Verification of legacy families end to end: gradients through While loops (dynamic_rnn),
a GRU whose Keras weights hold two TF variables each, and a "div"-partitioned lookup."""

import pytest

from tb_varmap import export_run
from tb_varmap.demo.families import generate_families

RUNS = ["fam_lstm", "fam_gru", "fam_embedding_div"]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify_families")
    generate_families(str(out), models=RUNS, variants=("ref",))
    return str(out)


@pytest.mark.parametrize("run", RUNS)
def test_every_comparison_is_ok(logdir, run):
    _, report = export_run.export(logdir, run, verify=True)
    verification = report["verification"]
    assert verification["passed"] is True
    gradients = {row["variable"]: row for row in verification["gradients"]}
    assert gradients, "no gradient was compared"
    for name, row in gradients.items():
        assert row["status"] == "OK", (name, row)
    assert all(layer["isolated"]["status"] == "OK" for layer in verification["layers"])
