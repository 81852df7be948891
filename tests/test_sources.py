"""Graph and checkpoint readers on files written by real TensorFlow (tf.compat.v1)."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tb_varmap.errors import NotFound
from tb_varmap.sources import RunError, events, graphfiles
from tb_varmap.sources.checkpoint import Checkpoints, read_state, step_of

v1 = tf.compat.v1


def _small_graph():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        w = v1.get_variable("dense/kernel", [3, 2], initializer=v1.random_normal_initializer(seed=1))
        tf.identity(tf.matmul(x, w), name="y")
    return g


def _save_steps(model_dir, steps, max_to_keep=5, prefix="model.ckpt"):
    """Saves the small graph's variable at each step; returns {step: value}."""
    g = _small_graph()
    values = {}
    with g.as_default():
        var = v1.global_variables()[0]
        saver = v1.train.Saver(max_to_keep=max_to_keep)
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            for step in steps:
                sess.run(var.assign(np.full([3, 2], float(step), np.float32)))
                saver.save(sess, os.path.join(model_dir, prefix), global_step=step)
                values[step] = sess.run(var)
    return g, values


def _writer(logdir, graph=None):
    """A TF1 FileWriter (needs a graph context outside eager mode)."""
    with (graph or tf.Graph()).as_default():
        return v1.summary.FileWriter(logdir, graph)


# -- event files -------------------------------------------------------------------------
def test_event_graph_is_read_without_tensorflow_record_reader(tmp_path):
    g = _small_graph()
    writer = _writer(str(tmp_path), g)
    writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag="loss", simple_value=1.0)]), 1)
    writer.close()
    graph_def, _ = events.read_event_graphs(str(tmp_path))
    assert {n.name for n in graph_def.node} == {n.name for n in g.as_graph_def().node}


def test_event_meta_graph_is_read(tmp_path):
    g = _small_graph()
    with g.as_default():
        meta = v1.train.export_meta_graph()
    writer = _writer(str(tmp_path))
    writer.add_meta_graph(meta)
    writer.close()
    graph_def, meta_read = events.read_event_graphs(str(tmp_path))
    assert meta_read is not None
    assert "dense/kernel" in {n.name for n in graph_def.node}


def test_torn_event_file_keeps_the_graph(tmp_path):
    g = _small_graph()
    writer = _writer(str(tmp_path), g)
    for step in range(5):
        writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag="a", simple_value=step)]), step)
    writer.close()
    path = events.event_files(str(tmp_path))[0]
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 7)  # a writer killed mid-record
    graph_def, _ = events.read_event_graphs(str(tmp_path))
    assert "y" in {n.name for n in graph_def.node}


def test_summary_only_event_file_has_no_graph(tmp_path):
    writer = _writer(str(tmp_path))
    writer.add_summary(v1.Summary(value=[v1.Summary.Value(tag="loss", simple_value=1.0)]), 1)
    writer.close()
    assert events.read_event_graphs(str(tmp_path)) == (None, None)


def test_graph_from_tensorboard_data_provider(tmp_path):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    g = _small_graph()
    os.makedirs(tmp_path / "run_a")
    _writer(str(tmp_path / "run_a"), g).close()
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    graph_def = events.read_provider_graph(provider, "", "run_a")
    assert {n.name for n in graph_def.node} == {n.name for n in g.as_graph_def().node}
    assert events.read_provider_graph(provider, "", "no_such_run") is None


# -- graph files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,as_text", [("graph.pbtxt", True), ("graph.pb", False)])
def test_graph_files(tmp_path, name, as_text):
    g = _small_graph()
    tf.io.write_graph(g.as_graph_def(), str(tmp_path), name, as_text=as_text)
    path = graphfiles.find_graph_file(str(tmp_path))
    assert os.path.basename(path) == name
    assert "dense/kernel" in {n.name for n in graphfiles.read_graph_file(path).node}


def test_broken_graph_file_names_the_file(tmp_path):
    path = tmp_path / "graph.pbtxt"
    path.write_text("node { name: 'a' op: ")
    with pytest.raises(RunError, match="graph.pbtxt"):
        graphfiles.read_graph_file(str(path))


def test_meta_file_and_broken_meta(tmp_path):
    g, _ = _save_steps(str(tmp_path), [3])
    meta = graphfiles.read_meta(str(tmp_path / "model.ckpt-3.meta"))
    assert "dense/kernel" in {n.name for n in meta.graph_def.node}
    (tmp_path / "bad.meta").write_bytes(b"\xff\xff\xff not a proto")
    with pytest.raises(RunError, match="bad.meta"):
        graphfiles.read_meta(str(tmp_path / "bad.meta"))


def test_saved_model_written_by_tf1_builder(tmp_path):
    export = str(tmp_path / "export")
    g = _small_graph()
    with g.as_default(), v1.Session(graph=g) as sess:
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(export)
        sig = v1.saved_model.predict_signature_def(
            inputs={"x": g.get_tensor_by_name("x:0")}, outputs={"y": g.get_tensor_by_name("y:0")})
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.save()
    meta = graphfiles.read_saved_model(os.path.join(export, "saved_model.pb"))
    assert "serve" in meta.meta_info_def.tags
    assert meta.signature_def["serving_default"].outputs["y"].name == "y:0"


# -- checkpoints --------------------------------------------------------------------------
def test_steps_latest_and_values(tmp_path):
    _, values = _save_steps(str(tmp_path), [1, 2, 3, 4, 5, 6], max_to_keep=5)
    ckpts = Checkpoints(str(tmp_path))
    assert ckpts.steps == [2, 3, 4, 5, 6]  # the Saver deleted step 1
    assert ckpts.latest_step == 6
    assert ckpts.prefix() == str(tmp_path / "model.ckpt-6")
    reader = ckpts.reader(4)
    assert reader.shapes == {"dense/kernel": [3, 2]}
    assert reader.dtypes == {"dense/kernel": "float32"}
    np.testing.assert_array_equal(reader.read("dense/kernel"), values[4])
    with pytest.raises(NotFound, match="step 1"):
        ckpts.prefix(1)


def test_stale_state_file_falls_back_to_files(tmp_path):
    _save_steps(str(tmp_path), [7])
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/elsewhere/model.ckpt-0"\nall_model_checkpoint_paths: "/elsewhere/model.ckpt-0"\n')
    assert read_state(str(tmp_path)) == ("model.ckpt-0", ["model.ckpt-0"])
    ckpts = Checkpoints(str(tmp_path))
    assert ckpts.steps == [7]
    assert "model.ckpt-0" in ckpts.stale_state
    assert ckpts.reader().shapes["dense/kernel"] == [3, 2]


def test_prefix_without_step_and_no_state_file(tmp_path):
    _save_steps(str(tmp_path), [5], prefix="checkpoints")
    for name in os.listdir(tmp_path):  # rename checkpoints-5.* to checkpoints.* like old scripts did
        shutil.move(str(tmp_path / name), str(tmp_path / name.replace("checkpoints-5", "checkpoints")))
    os.remove(tmp_path / "checkpoint")
    ckpts = Checkpoints(str(tmp_path))
    assert ckpts.steps == [0]
    assert ckpts.prefix(0) == str(tmp_path / "checkpoints")
    assert ckpts.meta_path() == str(tmp_path / "checkpoints.meta")
    np.testing.assert_array_equal(ckpts.reader().read("dense/kernel"), np.full([3, 2], 5.0))


def test_empty_dir_and_corrupt_checkpoint(tmp_path):
    ckpts = Checkpoints(str(tmp_path))
    assert ckpts.steps == [] and ckpts.latest_step is None
    with pytest.raises(RunError, match="no checkpoint"):
        ckpts.prefix()
    _save_steps(str(tmp_path), [2])
    (tmp_path / "model.ckpt-2.index").write_bytes(b"garbage")
    with pytest.raises(RunError, match="model.ckpt-2"):
        Checkpoints(str(tmp_path)).reader()


def test_step_of():
    assert step_of("/a/model.ckpt-46499") == 46499
    assert step_of("checkpoints") == 0
    assert step_of("export") == 0
