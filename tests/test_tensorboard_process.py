"""Once through a real `tensorboard` process: the tab is listed and the routes answer."""

import json
import shutil
import urllib.error
import urllib.request

from tensorboard_process import fetch, tensorboard

from tb_varmap.demo.generate import generate


def test_real_tensorboard_serves_the_plugin(tmp_path):
    logdir = tmp_path / "logdir"
    generate(str(logdir), models=["conv_bias", "custom_sigmoid"], variants=("ref",))
    with tensorboard(str(logdir)) as base:
        status, headers, body = fetch(base + "/data/plugins_listing")
        listing = json.loads(body)
        assert listing["varmap"]["enabled"] and listing["varmap"]["tab_name"] == "VarMap"
        runs = json.loads(fetch(base + "/data/plugin/varmap/runs")[2])["runs"]
        assert {row["run"] for row in runs} == {"conv_bias", "custom_sigmoid"}
        graph = json.loads(fetch(base + "/data/plugin/varmap/graph?run=conv_bias")[2])
        assert graph["source"] == "events"
        assert any(node["op"] == "Conv2D" for node in graph["nodes"])
        try:
            urllib.request.urlopen(base + "/data/plugin/varmap/graph?run=..%2F..", timeout=10)
            raise AssertionError("traversal run name was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400
            assert "error" in json.loads(e.read())
        request = urllib.request.Request(
            base + "/data/plugin/varmap/tags?run=custom_sigmoid", method="PUT",
            data=json.dumps({"base_revision": 0, "variables": {"param": {"role": "custom.param"}}}).encode(),
            headers={"X-VarMap-Request": "1", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["tags"]["revision"] == 1
    assert json.load(open(logdir / "custom_sigmoid" / "varmap" / "tags.json"))["revision"] == 1
    shutil.rmtree(logdir)
