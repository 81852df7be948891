"""The benchmarks still run (smoke mode: each once, tiny sizes). Not timed: nothing here
fails because a machine is slow; it fails when a benchmark breaks or measures nothing."""
import json
import os

import numpy as np
import pytest

from bench import run_all, synth_graph

CHROMIUM = "/usr/bin/chromium"


def test_synthetic_graph_is_a_trainable_tf1_graph():
    import tensorflow as tf

    graph = synth_graph.synth_graph(1000, towers=2)
    assert 900 <= len(graph.node) <= 1100
    names = [n.name for n in graph.node]
    for marker in ("tower_1/gradients/", "/Adam_1", "Adam/update_", "save/RestoreV2", "init"):
        assert any(marker in n for n in names), marker
    gd = tf.compat.v1.GraphDef.FromString(graph.SerializeToString())
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        tf.compat.v1.import_graph_def(gd, name="")
        sess.run("init")
        feed = {"images:0": np.ones([4, 32, 32, 64], np.float32), "labels:0": np.arange(4, dtype=np.int32)}
        before = sess.run("model/logits/bias:0")
        probs, _ = sess.run(["tower_0/model/probs:0", "Adam"], feed)
        assert probs.shape == (2, 10)
        assert not np.array_equal(before, sess.run("model/logits/bias:0"))  # Adam updated it


def test_graph_event_reads_back(tmp_path):
    from tb_varmap.sources import events

    graph = synth_graph.synth_graph(300)
    synth_graph.write_graph_run(str(tmp_path), graph)
    read, _ = events.read_event_graphs(str(tmp_path))
    assert read == graph and len(read.node) == len(graph.node)


def test_smoke_runs_every_light_benchmark(tmp_path):
    result = run_all.smoke(str(tmp_path))

    g = result["graph_api"]
    assert g["varmap"].get("ok"), g["varmap"]
    assert g["varmap"]["encoding"] == "gzip" and g["varmap"]["wire_bytes"] < g["varmap"]["decoded_bytes"]
    assert g["graphs"]["decoded_bytes"] > 0 and g["graphs"]["cold_s"] > 0
    assert g["rss_mib"]["loaded"] > 0 and g["rss_mib"]["peak"] >= g["rss_mib"]["loaded"]

    if os.path.exists(CHROMIUM):
        for tab in ("varmap", "graphs"):
            p = result["panel"][tab]
            assert not p["errors"], p["errors"]
            assert p["first_s"] > 0 and p["drawn_items"] > 0 and p["heap_mib"] > 0

    f = result["fidelity"]
    assert f["exit"] == 0, f.get("error")
    assert f["outputs_max_abs"] == 0.0  # MatMul: Keras runs the same kernel
    assert f["export_s"] > 0 and f["verify_s"] > 0 and f["peak_rss_mib"] > 50

    s = result["speed"]
    assert s["max_abs_diff"] == 0.0 and s["ratio"] > 0

    with open(tmp_path / "smoke.json") as fh:
        saved = json.load(fh)
    assert saved["command"] and saved["machine"]


@pytest.mark.slow
def test_export_overhead_smoke(tmp_path):
    from bench import export_overhead

    r = export_overhead.main(["--smoke", "--out", str(tmp_path)])
    row = r["exports"][0]
    # exit 1 = a comparison outside tolerance (random ResNet weights): still a full report
    assert row["exit"] in (0, 1), row.get("error")
    assert row["isolated_max_abs"] is not None and row["layers"] > 100
    assert r["ratio_wall"] > 0 and r["baseline"]["work_s"] > 0


@pytest.mark.slow
def test_big_checkpoint_smoke(tmp_path):
    from bench import big_checkpoint

    r = big_checkpoint.main(["--smoke", "--out", str(tmp_path)])
    assert r["list"]["variables"] == 4
    assert r["export"]["exit"] == 0 and r["export_verify"]["exit"] == 0


def test_families_smoke(tmp_path):
    from bench import families

    payload = families.main(["--smoke", "--out", str(tmp_path)])
    rows = {r["run"]: r for r in payload["runs"]}
    assert sorted(rows) == ["fam_embedding", "half_plus_two_v1_checkpoint"]
    fam = rows["fam_embedding"]
    assert fam["exit"] == 0 and not fam.get("error"), fam.get("error")
    assert fam["outputs_cmp"]["max_abs"] == 0.0 and fam["gradients"]["compared"] == 3
    assert "Embedding" in fam["keras_layers"] and fam["wall_s"] > 0
    assert "--inputs ids --outputs y:0" in fam["command"]
    assert payload["command"] and payload["machine"]
    table = (tmp_path / "families_results_smoke.md").read_text()
    assert "| fam_embedding | passed | Dense, Embedding" in table
    assert families.KEEP_MARK in table
    assert (tmp_path / "families_smoke.json").exists()


def test_families_table_keeps_failures_as_rows_and_notes(tmp_path):
    from bench import families

    payload = {"command": "python -m bench.families", "finished": "now", "revision": "abc",
               "machine": "m", "loadavg_at_end": [1.0, 1.0, 1.0], "settings": {},
               "runs": [{"run": "fam_x_tf1", "exit": 2, "wall_s": 3.0,
                         "error": "tb-varmap: run 'fam_x_tf1': no handler for op | Enter"},
                        {"run": "fam_y", "exit": None, "wall_s": None,
                         "error": "generation failed: boom"}]}
    text = families.markdown(payload)
    assert "| fam_x_tf1 | exit 2: tb-varmap: run 'fam_x_tf1': no handler for op \\| Enter |" in text
    assert "| fam_y | exit None: generation failed: boom |" in text
    assert "0 passed, 0 exported but not passed, 2 refused or failed" in text
    path = str(tmp_path / "t.md")
    families.write_table(path, text)
    with open(path, "a") as f:
        f.write("hand-written note\n")
    families.write_table(path, text.replace("abc", "def"))
    out = open(path).read()
    assert "commit def" in out and out.endswith("hand-written note\n") and out.count("fam_y") == 2
