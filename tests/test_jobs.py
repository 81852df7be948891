"""Exports as background jobs over HTTP: progress, result, report, one per run, killed children."""

import os
import signal
import time

import pytest

from tb_app import copy_runs, get_json, make_client, send_json



@pytest.fixture
def logdir(tf1_models_dir, tmp_path):
    return copy_runs(tf1_models_dir, tmp_path / "logdir", ["cnn_bn_adam", "custom_sigmoid"], variants=("",))


def wait_for(client, job_id, states=("done", "failed"), timeout=300):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        job = get_json(client, "jobs/" + job_id)
        seen.append((job["state"], job["progress"], job["stage"]))
        if job["state"] in states:
            return job, seen
        time.sleep(0.2)
    raise AssertionError("job %s did not reach %s: %s" % (job_id, states, seen[-5:]))


def test_export_job_reports_progress_result_and_report(logdir):
    client, _ = make_client(logdir)
    job_id = send_json(client, "POST", "export?run=cnn_bn_adam", {"verify": True}, status=202)["job"]
    job, seen = wait_for(client, job_id)
    assert job["state"] == "done", job["error"]
    progress = [p for _, p, _ in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert job["result"]["model_path"] == os.path.join("varmap", "model.keras")
    assert os.path.isfile(os.path.join(logdir, "cnn_bn_adam", "varmap", "model.keras"))
    assert job["result"]["verification"]["passed"] is True
    report = get_json(client, "report?run=cnn_bn_adam")
    assert report["verification"]["passed"] is True
    assert {l["keras_class"] for l in report["conversion"]["layers"]} >= {"Conv2D", "BatchNormalization", "Dense"}
    runs = {r["run"]: r for r in get_json(client, "runs")["runs"]}
    assert runs["cnn_bn_adam"]["has_model"] and runs["cnn_bn_adam"]["has_report"]
    assert "cnn_bn_adam/varmap" not in runs


def test_second_export_of_a_running_run_is_refused(logdir):
    client, _ = make_client(logdir)
    first = send_json(client, "POST", "export?run=custom_sigmoid", {}, status=202)["job"]
    second = send_json(client, "POST", "export?run=custom_sigmoid", {}, status=409)
    assert second["job"] == first
    job, _ = wait_for(client, first)
    assert job["state"] == "done", job["error"]
    send_json(client, "POST", "export?run=custom_sigmoid", {}, status=202)


def test_bad_export_requests(logdir):
    client, _ = make_client(logdir)
    assert "nope" in send_json(client, "POST", "export?run=nope", {}, status=404)["error"]
    assert "colour" in send_json(client, "POST", "export?run=custom_sigmoid", {"colour": 1}, status=400)["error"]
    assert "step" in send_json(client, "POST", "export?run=custom_sigmoid", {"step": "x"}, status=400)["error"]
    assert "ghost" in get_json(client, "jobs/ghost", status=404)["error"]
    job_id = send_json(client, "POST", "export?run=custom_sigmoid", {"outputs": ["nowhere"]}, status=202)["job"]
    job, _ = wait_for(client, job_id)
    assert job["state"] == "failed" and "'nowhere'" in job["error"]
    assert "no verification report" in get_json(client, "report?run=custom_sigmoid", status=404)["error"]


def test_killed_export_keeps_previous_model_and_fails_cleanly(logdir):
    client, plugin = make_client(logdir)
    out_dir = os.path.join(logdir, "cnn_bn_adam", "varmap")
    first = send_json(client, "POST", "export?run=cnn_bn_adam", {"verify": False}, status=202)["job"]
    assert wait_for(client, first)[0]["state"] == "done"
    model_path = os.path.join(out_dir, "model.keras")
    before = open(model_path, "rb").read()

    second = send_json(client, "POST", "export?run=cnn_bn_adam", {"verify": True}, status=202)["job"]
    wait_for(client, second, states=("running",))
    job_object = plugin._jobs._jobs[second]
    deadline = time.time() + 120
    while job_object.progress < 0.15 and time.time() < deadline:  # inside the conversion
        time.sleep(0.05)
    os.kill(job_object.process.pid, signal.SIGKILL)
    job, _ = wait_for(client, second)
    assert job["state"] == "failed"
    assert "exited with code -9" in job["error"]
    assert open(model_path, "rb").read() == before
    assert not [n for n in os.listdir(out_dir) if n.startswith(".tmp")]
    # TensorBoard keeps serving, and the run can be exported again.
    assert get_json(client, "runs")["runs"]
    third = send_json(client, "POST", "export?run=cnn_bn_adam", {}, status=202)["job"]
    assert wait_for(client, third)[0]["state"] == "done"
