"""Bad input on disk and over HTTP: a clear 4xx naming the file/run/variable, nothing written,
TensorBoard keeps serving."""

import glob
import json
import os
import shutil
import threading

import pytest

from tb_app import copy_runs, get_json, make_client, send_json

from tb_varmap import export_run
from tb_varmap.errors import VarMapError


@pytest.fixture
def generated(tf1_models_dir):
    import pathlib

    return pathlib.Path(tf1_models_dir)


@pytest.fixture
def logdir(tf1_models_dir, tmp_path):
    import pathlib

    return pathlib.Path(copy_runs(tf1_models_dir, tmp_path / "logdir",
                                  ["conv_bias", "mlp_estimator_style", "dense_nobias"], variants=("",)))


def only(pattern):
    paths = glob.glob(str(pattern))
    assert len(paths) == 1, paths
    return paths[0]


def assert_export_refused(logdir, run, *fragments):
    with pytest.raises(VarMapError) as error:
        export_run.export(str(logdir), run)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not os.path.exists(os.path.join(logdir, run, "varmap", "model.keras"))
    return message


def test_corrupt_event_file_is_reported_and_others_keep_serving(logdir):
    event_file = only(logdir / "conv_bias" / "events.out.tfevents.*")
    with open(event_file, "r+b") as f:
        f.seek(40)
        f.write(b"\xff" * 64)
    client, _ = make_client(str(logdir))
    runs = {r["run"]: r for r in get_json(client, "runs")["runs"]}
    assert "dense_nobias" in runs
    # The graph either still reads from the .meta next to the checkpoint or the error names the run.
    response = client.get("/data/plugin/varmap/graph?run=conv_bias")
    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        assert "conv_bias" in json.loads(response.get_data())["error"]
    assert get_json(client, "graph?run=dense_nobias")["node_count"] > 0


def test_truncated_event_file(logdir):
    event_file = only(logdir / "dense_nobias" / "events.out.tfevents.*")
    size = os.path.getsize(event_file)
    with open(event_file, "r+b") as f:
        f.truncate(size // 2)
    client, _ = make_client(str(logdir))
    response = client.get("/data/plugin/varmap/graph?run=dense_nobias")
    assert response.status_code in (200, 400, 404)
    assert "error" in json.loads(response.get_data()) or response.status_code == 200


def test_graph_without_checkpoint(logdir):
    for path in glob.glob(str(logdir / "conv_bias" / "model.ckpt-*")) + [str(logdir / "conv_bias" / "checkpoint")]:
        os.remove(path)
    client, _ = make_client(str(logdir))
    rows = get_json(client, "variables?run=conv_bias")["variables"]
    assert rows and all(not row["in_checkpoint"] for row in rows)
    assert_export_refused(logdir, "conv_bias", "conv_bias", "checkpoint")


def test_checkpoint_without_graph(logdir):
    for path in glob.glob(str(logdir / "conv_bias" / "events.out.tfevents.*")) + glob.glob(
        str(logdir / "conv_bias" / "*.meta")
    ):
        os.remove(path)
    client, _ = make_client(str(logdir))
    rows = get_json(client, "variables?run=conv_bias")["variables"]
    assert {row["variable"] for row in rows} >= {"conv/kernel", "conv/bias"}
    assert all(not row["in_graph"] for row in rows)
    assert "conv_bias" in get_json(client, "graph?run=conv_bias", status=404)["error"]
    assert_export_refused(logdir, "conv_bias", "conv_bias", "graph")


def test_truncated_checkpoint_data(logdir):
    data = only(logdir / "conv_bias" / "model.ckpt-*.data-*")
    with open(data, "r+b") as f:
        f.truncate(16)
    client, _ = make_client(str(logdir))
    assert get_json(client, "variables?run=conv_bias")["variables"]  # listing reads only the index
    message = assert_export_refused(logdir, "conv_bias")
    assert "conv" in message


def test_missing_checkpoint_index(logdir):
    os.remove(only(logdir / "conv_bias" / "model.ckpt-*.index"))
    client, _ = make_client(str(logdir))
    response = client.get("/data/plugin/varmap/variables?run=conv_bias")
    assert response.status_code in (200, 400, 404)
    body = json.loads(response.get_data())
    if response.status_code == 200:
        assert all(not row["in_checkpoint"] for row in body["variables"])
    else:
        assert "conv_bias" in body["error"] or "index" in body["error"]
    assert_export_refused(logdir, "conv_bias")


def test_checkpoint_that_does_not_match_the_graph(generated, logdir):
    # dense_nobias's checkpoint under conv_bias's graph: missing variables.
    run = logdir / "conv_bias"
    for path in glob.glob(str(run / "model.ckpt-*")) + [str(run / "checkpoint")]:
        os.remove(path)
    for path in glob.glob(str(generated / "dense_nobias" / "model.ckpt-*")) + [str(generated / "dense_nobias" / "checkpoint")]:
        if not path.endswith(".meta"):
            shutil.copy(path, run)
    assert_export_refused(logdir, "conv_bias", "conv/")


def test_unparsable_graph_pbtxt(logdir):
    with open(logdir / "mlp_estimator_style" / "graph.pbtxt", "w") as f:
        f.write("node { name: 'x' op: \n garbage {{{")
    for meta in glob.glob(str(logdir / "mlp_estimator_style" / "*.meta")):
        os.remove(meta)
    client, _ = make_client(str(logdir))
    error = get_json(client, "graph?run=mlp_estimator_style", status=400)["error"]
    assert "graph.pbtxt" in error
    assert get_json(client, "graph?run=dense_nobias")["node_count"] > 0


def test_inputs_outputs_that_do_not_exist_or_do_not_connect(logdir):
    client, _ = make_client(str(logdir))
    error = send_json(client, "PUT", "tags?run=dense_nobias",
                      {"base_revision": 0, "inputs": ["ghost"], "outputs": ["nowhere:0"]}, status=400)["error"]
    assert "'ghost'" in error and "'nowhere:0'" in error
    with pytest.raises(VarMapError, match="'ghost'"):
        export_run.export(str(logdir), "dense_nobias", inputs=["ghost"])
    with pytest.raises(VarMapError):
        # an output the input does not reach: the kernel's own read
        export_run.export(str(logdir), "conv_bias", inputs=["x"], outputs=["conv/kernel/read:0"])


def test_load_on_loopback_while_an_export_runs(logdir):
    client, plugin = make_client(str(logdir))

    job = send_json(client, "POST", "export?run=conv_bias", {"verify": False}, status=202)["job"]
    failures = []

    def hammer():
        # werkzeug's test client is not thread-safe: one client per thread over the same app.
        from werkzeug import test as werkzeug_test
        from werkzeug import wrappers

        own = werkzeug_test.Client(client.application, wrappers.Response)
        for i in range(15):
            route = ["graph?run=dense_nobias", "variables?run=conv_bias", "runs"][i % 3]
            response = own.get("/data/plugin/varmap/" + route)
            if response.status_code != 200:
                failures.append((route, response.status_code))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures
    assert plugin._jobs.wait(job)["state"] == "done"
