"""Once through a real `tensorboard` process (bench.tbserver starts it): the tab is listed and
the routes answer."""

import json
import shutil
import urllib.error
import urllib.request

from bench.tbserver import tensorboard

from tb_varmap.demo.generate import generate


def test_real_tensorboard_serves_the_plugin(tmp_path):
    logdir = tmp_path / "logdir"
    generate(str(logdir), models=["conv_bias", "custom_sigmoid"], variants=("ref",))
    with tensorboard(str(logdir), log_dir=str(tmp_path)) as tb:
        base = tb.base
        tb.wait_for(lambda t: t.json("/data/plugins_listing").get("varmap", {}).get("enabled"),
                    "an active varmap plugin", 120)
        listing = tb.json("/data/plugins_listing")
        assert listing["varmap"]["enabled"] and listing["varmap"]["tab_name"] == "VarMap"
        runs = tb.json("/data/plugin/varmap/runs")["runs"]
        assert {row["run"] for row in runs} == {"conv_bias", "custom_sigmoid"}
        graph = tb.json("/data/plugin/varmap/graph?run=conv_bias")
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
