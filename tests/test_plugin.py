"""The plugin through TensorBoard's own WSGI app, over real TF-written event files."""

import json
import os
import shutil

import pytest

from tb_app import PREFIX, WRITE_HEADERS, copy_runs, get_json, make_client, send_json


MODELS = ["dense_nobias", "conv_bias", "custom_sigmoid", "cnn_bn_adam", "mlp_estimator_style"]


@pytest.fixture
def generated(tf1_models_dir):
    return tf1_models_dir


@pytest.fixture
def logdir(tf1_models_dir, tmp_path):
    return copy_runs(tf1_models_dir, tmp_path / "logdir", MODELS)


@pytest.fixture
def client(logdir):
    return make_client(logdir)[0]


def test_runs_lists_source_runs_but_not_eval_or_output_folders(client, logdir):
    os.makedirs(os.path.join(logdir, "dense_nobias", "varmap"))
    runs = {row["run"]: row for row in get_json(client, "runs")["runs"]}
    assert "dense_nobias" in runs and "cnn_bn_adam_resource" in runs
    assert "mlp_estimator_style/eval" not in runs
    assert not any(name.endswith("varmap") for name in runs)
    assert runs["cnn_bn_adam"]["graph_source"] == "events"
    assert runs["mlp_estimator_style"]["graph_source"] == "graph.pbtxt"
    assert len(runs["cnn_bn_adam"]["checkpoint_steps"]) >= 2
    assert runs["cnn_bn_adam"]["latest_step"] == max(runs["cnn_bn_adam"]["checkpoint_steps"])


def test_logdir_itself_is_run_dot(generated, tmp_path):
    model_dir = tmp_path / "model_dir"
    shutil.copytree(os.path.join(generated, "conv_bias"), model_dir)
    client, _ = make_client(str(model_dir))
    assert [row["run"] for row in get_json(client, "runs")["runs"]] == ["."]
    variables = get_json(client, "variables?run=.")["variables"]
    assert {row["variable"]: row["role"] for row in variables if row["kind"] == "weight"} == {
        "conv/kernel": "conv.kernel",
        "conv/bias": "conv.bias",
    }


def test_graph_is_compact_with_scopes(client):
    graph = get_json(client, "graph?run=cnn_bn_adam")
    assert graph["node_count"] == len(graph["nodes"])
    by_name = {node["name"]: node for node in graph["nodes"]}
    scopes = {scope["id"]: scope for scope in graph["scopes"]}
    assert scopes[0]["name"] == "" and scopes[0]["parent"] is None
    for node in graph["nodes"]:
        assert node["scope"] in scopes
        assert all(0 <= i < len(graph["nodes"]) for i in node["inputs"])
    assert any(node["machinery"] for node in graph["nodes"])  # Adam, gradients, save
    assert any(node["forward"] and node["variable"] for node in graph["nodes"])
    assert "x" in graph["inputs"]
    assert by_name["x"]["op"] == "Placeholder"


def test_variables_roles_and_optimizer_slots(client):
    result = get_json(client, "variables?run=cnn_bn_adam")
    rows = {row["variable"]: row for row in result["variables"]}
    kinds = {row["kind"] for row in rows.values()}
    assert {"weight", "optimizer_slot"} <= kinds
    for row in rows.values():
        if row["kind"] != "weight":
            assert row["role"] == "ignore", row
    weights = [row for row in rows.values() if row["kind"] == "weight"]
    assert weights and all(row["source"] == "inferred" for row in weights)
    assert result["totals"]["unresolved"] == sum(1 for row in result["variables"] if row["role"] is None)
    assert "dense.kernel" in result["roles"]


def test_unknown_step_and_run_are_clean_4xx(client):
    assert "error" in get_json(client, "variables?run=cnn_bn_adam&step=999999", status=404)
    assert "nope" in get_json(client, "graph?run=nope", status=404)["error"]
    assert "error" in get_json(client, "variables?run=cnn_bn_adam&step=abc", status=400)
    for bad in ["..", "../x", "/etc", "a/../b", "a%2F..%2Fb"]:
        body = get_json(client, "graph?run=" + bad, status=400 if ".." in bad.replace("%2F", "/") or bad.startswith("/") else 404)
        assert "error" in body


def _tag_body(base, role="custom.param"):
    return {"base_revision": base, "variables": {"param": {"role": role}}}


def test_tags_put_get_and_conflict(client, logdir):
    run = "custom_sigmoid"
    assert get_json(client, "tags?run=" + run)["tags"]["revision"] == 0
    saved = send_json(client, "PUT", "tags?run=" + run, _tag_body(0))
    assert saved["tags"]["revision"] == 1
    on_disk = json.load(open(os.path.join(logdir, run, "varmap", "tags.json")))
    assert on_disk["variables"]["param"]["role"] == "custom.param" and on_disk["revision"] == 1
    stale = send_json(client, "PUT", "tags?run=" + run, _tag_body(0, "constant"), status=409)
    assert stale["current"]["revision"] == 1
    assert json.load(open(os.path.join(logdir, run, "varmap", "tags.json")))["variables"]["param"]["role"] == "custom.param"
    rows = {r["variable"]: r for r in get_json(client, "variables?run=" + run)["variables"]}
    assert rows["param"]["source"] == "tag"


def test_invalid_tags_rejected_and_nothing_written(client, logdir):
    run = "dense_nobias"
    kernel = next(r["variable"] for r in get_json(client, "variables?run=" + run)["variables"] if r["kind"] == "weight")
    cases = [
        ({"base_revision": 0, "variables": {kernel: {"role": "no.such.role"}}}, "no.such.role"),
        ({"base_revision": 0, "variables": {"ghost/var": {"role": "dense.kernel"}}}, "ghost/var"),
        ({"base_revision": 0, "variables": {kernel: {"role": "conv.kernel"}}}, "rank 4"),
        ({"base_revision": 0, "format_version": 99}, "format_version"),
        ({"base_revision": 0, "variables": {kernel: "dense.kernel"}}, kernel),
    ]
    for body, expected in cases:
        error = send_json(client, "PUT", "tags?run=" + run, body, status=400)["error"]
        assert expected in error, (body, error)
    assert not os.path.exists(os.path.join(logdir, run, "varmap", "tags.json"))


def test_state_changing_routes_refuse_cross_site(client):
    run = "custom_sigmoid"
    send_json(client, "PUT", "tags?run=" + run, _tag_body(0), status=403, headers={})
    send_json(client, "PUT", "tags?run=" + run, _tag_body(0), status=403,
              headers=dict(WRITE_HEADERS, Origin="http://evil.example"))
    response = client.post(PREFIX + "export?run=" + run, data={"a": "b"})  # a plain HTML form
    assert response.status_code == 403
    too_big = client.put(PREFIX + "tags?run=" + run, data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                         headers=WRITE_HEADERS, content_type="application/json")
    assert too_big.status_code == 413


def test_static_assets_and_traversal(client):
    response = client.get(PREFIX + "index.js")
    if response.status_code == 200:
        assert response.headers["Content-Type"].startswith("text/javascript")
    for bad in ["static/../plugin.py", "static/%2e%2e/plugin.py", "static/..%2Fplugin.py", "static//etc/passwd"]:
        assert client.get(PREFIX + bad).status_code == 404, bad


def test_plugin_is_listed_active(client):
    response = client.get("/data/plugins_listing")
    listing = json.loads(response.get_data(as_text=True))
    assert listing["varmap"]["enabled"] is True
    assert listing["varmap"]["loading_mechanism"]["module_path"].endswith("/data/plugin/varmap/index.js")
    assert listing["varmap"]["tab_name"] == "VarMap"


def test_graph_forward_set_follows_the_tagged_outputs(client):
    default = get_json(client, "graph?run=cnn_bn_adam")
    assert default["outputs"] == ["probs:0"]
    forward = lambda graph: {n["name"] for n in graph["nodes"] if n["forward"]}
    send_json(client, "PUT", "tags?run=cnn_bn_adam", {"base_revision": 0, "outputs": ["model/pool1:0"]})
    narrowed = get_json(client, "graph?run=cnn_bn_adam")
    assert narrowed["outputs"] == ["model/pool1:0"]
    assert forward(narrowed) < forward(default)
    assert "model/logits/MatMul" in forward(default) - forward(narrowed)


def test_graph_payloads_are_built_at_start_up(logdir):
    import time

    _, plugin = make_client(logdir)
    deadline = time.time() + 120
    while "cnn_bn_adam" not in plugin._cache._payloads and time.time() < deadline:
        time.sleep(0.1)
    assert "cnn_bn_adam" in plugin._cache._payloads  # before any request asked for it
