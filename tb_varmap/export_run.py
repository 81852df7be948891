"""Export one run: RunData + tags → converter → `.keras` written atomically (→ verification).

This is the glue the CLI, the background jobs and `tb_varmap.export()` share.
"""

import contextlib
import datetime
import fcntl
import json
import os

from tb_varmap import fileio, metadata
from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput, Conflict

EMA_SUFFIX = "/ExponentialMovingAverage"


def _noop_progress(fraction, message):
    pass


@contextlib.contextmanager
def export_lock(run_dir, run):
    """One export per run at a time, across threads and processes (CLI and TensorBoard)."""
    out_dir = tags_mod.output_dir(run_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".export.lock"), "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("an export of run %r is already running" % run)
        try:
            remove_stale_temp_files(out_dir)
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def remove_stale_temp_files(out_dir):
    """Temp files left by a killed export (only call while holding the export lock)."""
    for name in os.listdir(out_dir):
        if name.startswith(fileio.TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, name))


def clean_after_crash(run_dir, run):
    """Removes what a killed export left behind, unless another export is running."""
    with contextlib.suppress(Conflict, FileNotFoundError):
        with export_lock(run_dir, run):
            pass


def load_tag_file(run_data, tags_file):
    """Tags from --tags FILE (validated against the run) or the run's own tags.json."""
    if tags_file is None:
        return tags_mod.load_tags(run_data.run_dir)
    if not os.path.isfile(tags_file):
        raise BadInput("tags file %s does not exist" % tags_file)
    stored = tags_mod.load_tags(run_data.run_dir, path=tags_file)
    tags_mod.validate(stored, run_data, where="tags file %s" % tags_file)
    return stored


def choose_io(run_data, tags, inputs=None, outputs=None):
    """(inputs, outputs): given ones, else the tags', else the run's defaults; with outputs
    chosen but no inputs, the inputs those outputs depend on (see GraphIR.inputs_for)."""
    default_inputs, default_outputs = run_data.default_io()
    outputs = list(outputs or tags.get("outputs") or default_outputs)
    nodes = run_data.ir.nodes
    for name in outputs:
        if name.split(":")[0] not in nodes:
            raise BadInput("output %r is not a node or tensor of run %r" % (name, run_data.run))
    if not (inputs or tags.get("inputs")) and outputs != default_outputs:
        default_inputs = run_data.ir.inputs_for([n if ":" in n else n + ":0" for n in outputs])
    inputs = list(inputs or tags.get("inputs") or default_inputs)
    for name in inputs:
        if name.split(":")[0] not in nodes:
            raise BadInput("input %r is not a node of run %r" % (name, run_data.run))
    if not inputs:
        raise BadInput("run %r: no model input found; name the placeholders with --inputs" % run_data.run)
    if not outputs:
        raise BadInput("run %r: no model output found; name them with --outputs" % run_data.run)
    outputs = [name if ":" in name else name + ":0" for name in outputs]
    return inputs, outputs


def graph_file(run_data):
    """The file the run's graph comes from, for messages ("export.meta", "saved_model.pb")."""
    source = run_data.graph_source
    if source == "meta":
        path = run_data.checkpoints.meta_path()
        return os.path.basename(path) if path else "the .meta file"
    if source == "saved_model":
        return "saved_model.pb"
    return "the event file" if source == "events" else source


@contextlib.contextmanager
def naming_run(run_data):
    """BadInput raised inside (converter, verifier) names the run and its graph file."""
    try:
        yield
    except BadInput as e:
        message = str(e)
        if message.startswith("run %r" % run_data.run):
            raise
        raise BadInput("run %r (graph %s): %s" % (run_data.run, graph_file(run_data), message),
                       e.problems) from e


_PLACEHOLDER_OPS = ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault")


def graph_for_io(run_data, inputs, outputs):
    """Serialized GraphDef in which every input is a Placeholder.

    An input may be any node whose output 0 the model is fed with, e.g. the decoded feature
    `x` behind a serving front end (ParseExample); such a node becomes a Placeholder of its
    dtype and static shape, so converter and verifier both see the graph cut there (what
    fed it is left unused). Graphs whose inputs are all placeholders are returned unchanged.
    """
    graph_bytes = run_data.graph_def.SerializeToString()
    ir = run_data.ir
    cut = [name.split(":")[0] for name in inputs]
    cut = [name for name in cut if name in ir.nodes and ir.nodes[name].op not in _PLACEHOLDER_OPS]
    if not cut:
        return graph_bytes
    from tensorflow.core.framework import graph_pb2

    needed = ir.forward_set(inputs, outputs)
    for name in cut:
        node = ir.nodes[name]
        for j, slot in ir.consumers[node.index]:
            if j in needed and ir.node_list[j].input_ports[slot] != 0:
                raise BadInput("run %r: input %r is fed as its output 0, but %r uses its output %d; "
                               "choose a node with one output (e.g. an Identity)"
                               % (run_data.run, name, ir.node_list[j].name, ir.node_list[j].input_ports[slot]))
    gd = graph_pb2.GraphDef.FromString(graph_bytes)
    specs = _static_specs(gd, cut)
    for node in gd.node:
        if node.name not in specs:
            continue
        dtype, shape = specs[node.name]
        if dtype is None:
            raise BadInput("run %r: input %r (op %s): its dtype is unknown; choose another input"
                           % (run_data.run, node.name, node.op))
        node.op = "Placeholder"
        del node.input[:]
        node.ClearField("attr")
        node.ClearField("device")
        node.attr["dtype"].type = dtype
        if shape is not None:
            node.attr["shape"].shape.CopyFrom(_shape_proto(shape))
            node.attr["_output_shapes"].list.shape.add().CopyFrom(_shape_proto(shape))
        else:
            node.attr["shape"].shape.unknown_rank = True
    return gd.SerializeToString()


def _shape_proto(shape):
    from tensorflow.core.framework import tensor_shape_pb2

    proto = tensor_shape_pb2.TensorShapeProto()
    for d in shape:
        proto.dim.add().size = -1 if d is None else d
    return proto


def _static_specs(gd, names):
    """{node name: (DataType enum or None, shape list or None)} of output 0 of the nodes,
    from TensorFlow's shape inference, else the recorded `_output_shapes` / `T` attrs."""
    import tensorflow as tf

    specs = {}
    graph = None
    try:
        with tf.Graph().as_default() as graph:
            tf.graph_util.import_graph_def(gd, name="")
    except Exception:  # noqa: BLE001  (old or odd graphs: fall back to the recorded attrs)
        graph = None
    nodes = {n.name: n for n in gd.node}
    for name in names:
        dtype = shape = None
        if graph is not None:
            t = graph.get_tensor_by_name(name + ":0")
            dtype = t.dtype.base_dtype.as_datatype_enum
            shape = None if t.shape.rank is None else t.shape.as_list()
        node = nodes[name]
        if dtype is None:
            for key in ("T", "dtype"):
                if key in node.attr:
                    dtype = node.attr[key].type
                    break
        if shape is None and "_output_shapes" in node.attr and node.attr["_output_shapes"].list.shape:
            s = node.attr["_output_shapes"].list.shape[0]
            if not s.unknown_rank:
                shape = [d.size if d.size >= 0 else None for d in s.dim]
        specs[name] = (dtype, shape)
    return specs


def variable_bindings(run_data, step, tags, weights="raw"):
    """VariableBindings for every model weight, with exact checkpoint values.

    Returns (bindings, notes): notes lists EMA substitutions and unresolved roles.
    """
    from tb_varmap.convert import VariableBinding

    infos = run_data.variables(step)
    by_name = {info.name: info for info in infos}
    rows = tags_mod.effective_roles(infos, run_data.roles(step), tags)
    notes = {"ema": [], "unresolved": [], "missing_values": []}
    bindings = []
    for row in rows:
        info = by_name[row["variable"]]
        if info.kind != "weight" or row["role"] == "ignore" or not info.read_tensors:
            continue
        if not info.in_checkpoint:
            notes["missing_values"].append(info.name)
            continue
        role = row["role"]
        if role is None:
            notes["unresolved"].append(info.name)
            role = "custom.param"
        source = info.name
        if weights == "ema":
            shadow = by_name.get(info.name + EMA_SUFFIX)
            if shadow is not None and shadow.in_checkpoint:
                source = shadow.name
                notes["ema"].append(info.name)
        bindings.append(
            VariableBinding(
                name=info.name,
                read_tensors=list(info.read_tensors),
                role=role,
                trainable=bool(row["trainable"]),
                value=run_data.read_variable(source, step),
            )
        )
    return bindings, notes


def save_model_atomic(model, path):
    with fileio.replacing(path, suffix=".keras") as tmp:  # Keras wants the .keras suffix
        model.save(tmp)


def index_maps_path(model_path):
    """Where the converter's index maps of `model_path` go (next to it)."""
    base = model_path[:-len(".keras")] if model_path.endswith(".keras") else model_path
    return base + ".index.npz"


def save_index_maps(index_maps, path):
    """conversion.index_maps as one .npz (atomic): arrays "0", "1", ... and a manifest of
    (weight path, variable) per array."""
    import numpy as np

    pairs = [(p, v) for p in sorted(index_maps) for v in sorted(index_maps[p])]
    arrays = {str(i): index_maps[p][v] for i, (p, v) in enumerate(pairs)}
    manifest = np.array([json.dumps(pairs)])
    with fileio.replacing(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, manifest=manifest, **arrays)


def load_index_maps(path):
    """The maps saved by save_index_maps, or {} when there is no (readable) file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            pairs = json.loads(str(data["manifest"][0]))
            maps = {}
            for i, (p, v) in enumerate(pairs):
                maps.setdefault(p, {})[v] = np.asarray(data[str(i)])
            return maps
    except (OSError, KeyError, ValueError):
        return {}


def export(
    logdir,
    run=".",
    *,
    step=None,
    tags_file=None,
    inputs=None,
    outputs=None,
    out=None,
    report_path=None,
    weights=None,
    verify=False,
    inputs_npz=None,
    atol=1e-5,
    rtol=1e-5,
    progress=None,
    data_provider=None,
):
    """Exports `run` of `logdir` to a `.keras` file; returns (model, report).

    With verify=True the model is also checked against the original graph and the
    result is logged under <run>/varmap/ (scalars, histograms, report.json).
    """
    from tb_varmap import run as run_mod
    from tb_varmap import runcache

    progress = progress or _noop_progress
    runcache.check_run_name(run)
    progress(0.02, "reading run")
    if run not in run_mod.discover_runs(logdir):
        raise BadInput("run %r is not a run of logdir %s (runs: %s)" % (run, logdir, run_mod.discover_runs(logdir)))
    run_data = run_mod.RunData(logdir, run, data_provider=data_provider)
    if run_data.graph_def is None:
        raise BadInput("run %r has no graph to export (no graph event, graph.pbtxt, graph.pb or .meta)" % run)
    if not run_data.checkpoint_steps:
        raise BadInput("run %r has no checkpoint to take the weights from" % run)
    tags = load_tag_file(run_data, tags_file)
    if step is None:
        step = tags.get("step")
    step = runcache.resolve_step(run_data, step)
    weights = weights or tags.get("weights") or "raw"
    if weights not in tags_mod.WEIGHT_CHOICES:
        raise BadInput("weights must be one of %s, got %r" % (tags_mod.WEIGHT_CHOICES, weights))
    inputs, outputs = choose_io(run_data, tags, inputs, outputs)
    out_dir = tags_mod.output_dir(run_data.run_dir)
    out = out or os.path.join(out_dir, metadata.MODEL_FILENAME)

    with export_lock(run_data.run_dir, run), naming_run(run_data):
        progress(0.08, "reading checkpoint values")
        bindings, notes = variable_bindings(run_data, step, tags, weights)
        progress(0.15, "converting")
        from tb_varmap.convert import convert_graph

        conversion = convert_graph(
            graph_for_io(run_data, inputs, outputs),
            inputs,
            outputs,
            bindings,
            progress=lambda f, m: progress(0.15 + 0.45 * f, m),
        )
        progress(0.62, "saving model")
        save_model_atomic(conversion.model, out)
        save_index_maps(conversion.index_maps, index_maps_path(out))
        report = {
            "format_version": metadata.REPORT_FORMAT_VERSION,
            "run": run,
            "step": step,
            "weights": weights,
            "inputs": inputs,
            "outputs": outputs,
            "model_path": os.path.relpath(os.path.abspath(out), os.path.abspath(run_data.run_dir)),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "notes": notes,
            "conversion": conversion.report,
            "verification": None,
        }
        if verify:
            from tb_varmap import verify_run

            verify_run.verify_and_log(
                run_data, report, bindings, conversion, inputs_npz=inputs_npz, atol=atol, rtol=rtol,
                progress=lambda f, m: progress(0.65 + 0.33 * f, m),
            )
        else:
            from tb_varmap import summaries

            report["attempt"] = summaries.next_attempt(run_data.run_dir)
            fileio.write_json_atomic(os.path.join(out_dir, metadata.REPORT_FILENAME), report)
        if report_path:
            fileio.write_json_atomic(report_path, report)
    progress(1.0, "done")
    return conversion.model, report
