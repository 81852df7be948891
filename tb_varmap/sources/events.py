"""Graphs from TensorBoard event files, without TensorFlow.

A TF1 FileWriter stores the GraphDef (and sometimes a MetaGraphDef) as fields of an Event.
In the plugin the graph comes through the data provider (plugin "graphs", tag
`__run_graph__`); the CLI reads the files here with a plain TFRecord reader.
"""
import os
import struct

from tensorboard.compat.proto import event_pb2, graph_pb2, meta_graph_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from tb_varmap.sources import RunError

RUN_GRAPH_TAG = "__run_graph__"
GRAPHS_PLUGIN = "graphs"


def event_files(run_dir):
    """Event files directly in run_dir, oldest first (names sort by timestamp)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return []
    found = [n for n in names if "tfevents" in n and os.path.isfile(os.path.join(run_dir, n))]
    return [os.path.join(run_dir, n) for n in sorted(found)]


def records(path):
    """Yield the payloads of a TFRecord file; stops at a torn tail or a corrupt length field
    (its CRC is checked; payload CRCs are not)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            (length_crc,) = struct.unpack("<I", header[8:])
            if length > size - f.tell() or masked_crc32c(header[:8]) != length_crc:
                return
            data = f.read(length)
            if len(data) < length:
                return
            f.read(4)
            yield data


def read_event_graphs(run_dir):
    """(GraphDef | None, MetaGraphDef | None): the last graph written in run_dir's event files."""
    graph_def = meta = None
    for path in event_files(run_dir):
        try:
            for data in records(path):
                # graph_def is Event field 4, meta_graph_def field 9: skip summaries unparsed.
                if not _top_fields(data) & {4, 9}:
                    continue
                event = event_pb2.Event()
                try:
                    event.ParseFromString(data)
                except Exception:  # a corrupt record: skip it like TensorBoard does
                    continue
                what = event.WhichOneof("what")
                if what == "graph_def":
                    graph_def = _parse(graph_pb2.GraphDef(), event.graph_def, path)
                elif what == "meta_graph_def":
                    meta = _parse(meta_graph_pb2.MetaGraphDef(), event.meta_graph_def, path)
        except OSError as e:
            raise RunError("cannot read event file %s: %s" % (path, e)) from e
    if graph_def is None and meta is not None:
        graph_def = meta.graph_def
    return graph_def, meta


def read_provider_graph(data_provider, experiment_id, run):
    """GraphDef of `run` from a TensorBoard data provider, or None when it has none."""
    from tensorboard import context
    from tensorboard.data import provider

    ctx = context.RequestContext()
    try:
        seqs = data_provider.read_blob_sequences(
            ctx,
            experiment_id=experiment_id or "",
            plugin_name=GRAPHS_PLUGIN,
            downsample=1,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[RUN_GRAPH_TAG]),
        )
    except Exception:  # provider without this plugin's data: fall back to the files
        return None
    datums = seqs.get(run, {}).get(RUN_GRAPH_TAG) or []
    for datum in reversed(datums):
        for ref in datum.values:
            raw = data_provider.read_blob(ctx, blob_key=ref.blob_key)
            return _parse(graph_pb2.GraphDef(), raw, "graph of run %r (data provider)" % run)
    return None


def _varint(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _top_fields(data):
    """Field numbers present at the top level of a serialized message (wire format walk)."""
    fields, pos, end = set(), 0, len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            fields.add(field)
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 2:
                size, pos = _varint(data, pos)
                pos += size
            elif wire == 5:
                pos += 4
            else:
                return fields | {4, 9}  # unknown layout: let the real parser decide
    except IndexError:
        return fields | {4, 9}
    return fields


def length_delimited(data, field_number):
    """Yield the payloads of one length-delimited field of a serialized message."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            if field == field_number:
                yield data[pos : pos + size]
            pos += size
        else:
            raise ValueError("unsupported wire type %d" % wire)


def _parse(message, data, where):
    try:
        message.ParseFromString(data)
    except Exception as e:
        raise RunError("%s: not a valid %s (%s)" % (where, type(message).__name__, e)) from e
    return message
