"""Graphs from files: graph.pbtxt / graph.pb, `.meta` MetaGraphDefs, SavedModel `saved_model.pb`."""
import os

from google.protobuf import text_format
from tensorboard.compat.proto import graph_pb2, meta_graph_pb2

from tb_varmap.sources import RunError
from tb_varmap.sources.events import length_delimited

GRAPH_FILES = ("graph.pbtxt", "graph.pb")
SAVED_MODEL_FILE = "saved_model.pb"


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RunError("cannot read %s: %s" % (path, e)) from e


def read_graph_file(path):
    """GraphDef from graph.pbtxt (text) or graph.pb (binary)."""
    data = _read(path)
    graph_def = graph_pb2.GraphDef()
    try:
        if path.endswith(".pbtxt"):
            text_format.Parse(data.decode("utf-8"), graph_def, allow_unknown_field=True)
        else:
            graph_def.ParseFromString(data)
    except Exception as e:
        raise RunError("%s is not a valid GraphDef (%s)" % (path, str(e)[:300])) from e
    return graph_def


def read_meta(path):
    """MetaGraphDef from a `.meta` file."""
    data = _read(path)
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        meta.ParseFromString(data)
    except Exception as e:
        raise RunError("%s is not a valid MetaGraphDef (%s)" % (path, str(e)[:300])) from e
    if not meta.HasField("graph_def"):
        raise RunError("%s holds no graph_def (expected a MetaGraphDef written by a Saver)" % path)
    return meta


def read_saved_model(path, tag="serve"):
    """The MetaGraphDef tagged `tag` (else the first) of a SavedModel `saved_model.pb`.

    tensorboard ships no saved_model_pb2; a SavedModel is `meta_graphs` (field 2) of
    MetaGraphDefs, which we pick out of the wire format.
    """
    data = _read(path)
    metas = []
    try:
        for payload in length_delimited(data, 2):
            meta = meta_graph_pb2.MetaGraphDef()
            meta.ParseFromString(payload)
            metas.append(meta)
    except Exception as e:
        raise RunError("%s is not a valid SavedModel (%s)" % (path, str(e)[:300])) from e
    if not metas:
        raise RunError("%s holds no MetaGraphDef (expected a SavedModel)" % path)
    for meta in metas:
        if tag in meta.meta_info_def.tags:
            return meta
    return metas[0]


def find_graph_file(run_dir):
    """Path of graph.pbtxt or graph.pb in run_dir, or None."""
    for name in GRAPH_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    return None
