"""summaries.py: events under <run>/varmap/ read back with TensorBoard's own loaders."""

import json
import os
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.util import tensor_util

from tb_varmap import summaries as S
from tb_varmap import verify as V
from tb_varmap.errors import BadInput

from test_verify import mlp_case


def _report(passed=True, wrong=0.0):
    stats = V.compare(np.ones(3) + wrong, np.ones(3))
    return {
        "format_version": 1, "run": "m", "conversion": {"layers": []},
        "verification": {
            "atol": 1e-5, "rtol": 1e-5, "passed": passed,
            "layers": [{"layer": "dense1", "tf_outputs": ["dense1/Relu:0"],
                        "isolated": dict(stats), "cumulative": dict(stats)},
                       {"layer": "dense2", "tf_outputs": ["dense2/Relu:0"],
                        "isolated": V.failed("shape mismatch"),
                        "cumulative": V.failed("shape mismatch")}],
            "gradients": [{"variable": "dense1/kernel", **stats}],
            "outputs": [{"name": "out:0", **stats,
                         "sample": {"original": [1.0, 2.0, 3.0],
                                    "keras": [1.0 + wrong, 2.0, 3.0 + wrong]},
                         "error_histogram": V.error_histogram([1, 2], [1, 2])}],
        },
    }


def _scalars(run_dir):
    acc = ea.EventAccumulator(os.path.join(run_dir, "varmap"),
                              size_guidance={ea.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        out[tag] = {e.step: tensor_util.make_ndarray(e.tensor_proto) for e in acc.Tensors(tag)}
    return out


def test_write_then_read_back_with_tensorboard(tmp_path):
    run_dir = str(tmp_path / "run")
    assert S.read_report(run_dir) is None and S.next_attempt(run_dir) == 1
    written = S.write_verification(run_dir, _report(wrong=0.5), 1)
    S.write_verification(run_dir, _report(), 2)

    data = _scalars(run_dir)
    assert float(data["varmap/max_abs_error/dense1"][1]) == pytest.approx(0.5)
    assert float(data["varmap/max_abs_error/dense1"][2]) == 0.0
    assert np.isnan(data["varmap/max_abs_error/dense2"][1])          # FAILED: no number
    assert float(data["varmap/cumulative_max_abs_error/dense1"][1]) == pytest.approx(0.5)
    assert float(data["varmap/output/out_0/max_abs_error"][1]) == pytest.approx(0.5)
    assert float(data["varmap/gradient/dense1/kernel/max_abs_error"][2]) == 0.0
    assert float(data["varmap/passed"][1]) == 1.0
    hist = data["varmap/output/out_0/difference"][1]                 # [k, 3] buckets
    assert hist.shape[1] == 3 and hist[:, 2].sum() == 3
    assert data["varmap/output/out_0/original"][2][:, 2].sum() == 3
    assert "varmap/output/out_0/keras" in data

    stored = S.read_report(run_dir)
    assert stored["attempt"] == 2 and stored["run"] == "m" and "created" in stored
    assert stored["verification"]["layers"][1]["isolated"]["max_abs"] is None
    assert written["attempt"] == 1
    assert S.next_attempt(run_dir) == 3
    assert not [f for f in os.listdir(os.path.join(run_dir, "varmap")) if f.endswith(".tmp")]


def test_tensorboard_shows_run_varmap_in_scalars_dashboard(tmp_path):
    """The multiplexer TensorBoard's dashboards use sees `<run>/varmap` with our tags."""
    run_dir = tmp_path / "logdir" / "exp1"
    S.write_verification(str(run_dir), _report(), 1)
    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path / "logdir"))
    mux.Reload()
    assert "exp1/varmap" in mux.Runs()
    scalars = mux.PluginRunToTagToContent("scalars")
    assert "varmap/passed" in scalars["exp1/varmap"]
    assert "varmap/max_abs_error/dense1" in scalars["exp1/varmap"]
    hists = mux.PluginRunToTagToContent("histograms")
    assert "varmap/output/out_0/difference" in hists["exp1/varmap"]


def test_layer_bound_several_times_logs_its_worst_call(tmp_path):
    report = _report()
    rows = report["verification"]["layers"]
    rows.append({"layer": "dense1", "tf_outputs": ["t2/Relu:0"],
                 "isolated": V.compare(np.ones(2) + 0.25, np.ones(2)),
                 "cumulative": V.compare(np.ones(2) + 0.125, np.ones(2))})
    rows.append({"layer": "dense1", "tf_outputs": ["t3/Relu:0"],
                 "isolated": V.compare(np.ones(2), np.ones(2)),
                 "cumulative": V.failed("gone")})
    S.write_verification(str(tmp_path), report, 1)
    acc = ea.EventAccumulator(os.path.join(str(tmp_path), "varmap"),
                              size_guidance={ea.TENSORS: 0})
    acc.Reload()
    events = acc.Tensors("varmap/max_abs_error/dense1")
    assert [float(tensor_util.make_ndarray(e.tensor_proto)) for e in events] == [0.25]
    data = _scalars(str(tmp_path))
    assert np.isnan(data["varmap/cumulative_max_abs_error/dense1"][1])


def test_verification_only_report_nan_and_bad_input(tmp_path):
    run_dir = str(tmp_path / "r")
    ver = _report(passed=False)["verification"]
    ver["layers"][0]["isolated"]["max_abs"] = float("nan")            # defensive: still JSON
    ver["outputs"][0]["sample"]["keras"][1] = None                     # a NaN in the sample
    S.write_verification(run_dir, ver, 7)
    text = open(S.report_path(run_dir)).read()
    assert "NaN" not in text
    stored = json.loads(text)
    assert stored["attempt"] == 7 and stored["format_version"] == 1
    assert stored["verification"]["layers"][0]["isolated"]["max_abs"] is None
    data = _scalars(run_dir)
    assert float(data["varmap/passed"][7]) == 0.0
    assert data["varmap/output/out_0/keras"][7][:, 2].sum() == 2        # finite values only
    assert data["varmap/output/out_0/difference"][7][:, 2].sum() == 2
    assert S.next_attempt(run_dir) == 8
    with pytest.raises(BadInput, match="must be a dict"):
        S.write_verification(run_dir, [1], 1)
    with open(S.report_path(run_dir), "w") as f:
        f.write("{broken")
    with pytest.raises(BadInput, match="report.json.*not readable JSON"):
        S.read_report(run_dir)
    assert S.next_attempt(run_dir) == 1


def test_concurrent_writers_never_leave_a_torn_report(tmp_path):
    run_dir = str(tmp_path / "r")
    S.write_verification(run_dir, _report(), 1)
    stop, seen = threading.Event(), []

    def reader():
        while not stop.is_set():
            seen.append(S.read_report(run_dir)["attempt"])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for attempt in range(2, 8):
            S.write_verification(run_dir, _report(), attempt)
    finally:
        stop.set()
        t.join()
    assert seen and set(seen) <= set(range(1, 8))
    assert S.read_report(run_dir)["attempt"] == 7


def test_real_verification_round_trip(tmp_path):
    gd, variables, conv = mlp_case(tmp_path)
    k, b = conv.model.get_layer("dense2").get_weights()
    conv.model.get_layer("dense2").set_weights([k.T, b])
    report = {"verification": V.verify(gd, ["x"], ["out:0"], variables, conv)}
    S.write_verification(str(tmp_path), report, 3)
    data = _scalars(str(tmp_path))
    assert float(data["varmap/max_abs_error/dense1"][3]) == 0.0
    assert float(data["varmap/max_abs_error/dense2"][3]) > 1e-3
    assert float(data["varmap/passed"][3]) == 0.0
    assert float(data["varmap/gradient/dense2/kernel/max_abs_error"][3]) > 0
    assert S.read_report(str(tmp_path))["verification"]["passed"] is False
