"""One run of a logdir (`RunData`) and the runs of a logdir (`discover_runs`).

A run is a directory holding a graph (event file with a graph, graph.pbtxt/.pb, a `.meta`,
a SavedModel) and/or a checkpoint. Graph sources, in order: event files (through the
TensorBoard data provider when given), graph.pbtxt / graph.pb, the `.meta` next to the
checkpoint, `saved_model.pb`. Everything is parsed lazily, once, and thread-safely.
"""
import os
import threading

from tb_varmap import metadata
from tb_varmap.errors import NotFound, RunNotFound
from tb_varmap.ir import GraphIR
from tb_varmap.link import join_partitions, link_variables
from tb_varmap.roles import infer_roles
from tb_varmap.sources import RunError, events, graphfiles
from tb_varmap.sources.checkpoint import Checkpoints, scan

__all__ = ["RunData", "RunError", "discover_runs", "graph_json", "run_dir_of"]


def run_dir_of(logdir, run):
    return logdir if run in (".", "") else os.path.join(logdir, *run.split("/"))


def _lazy(method):
    """Compute a property once under the instance lock."""
    attr = "_cached_" + method.__name__

    def getter(self):
        value = self.__dict__.get(attr, _MISSING)
        if value is _MISSING:
            with self._lock:
                value = self.__dict__.get(attr, _MISSING)
                if value is _MISSING:
                    value = method(self)
                    self.__dict__[attr] = value
        return value

    getter.__doc__ = method.__doc__
    return property(getter)


_MISSING = object()


class RunData:
    """Facade over one run: graph, IR, checkpoints, variables, roles, default IO."""

    def __init__(self, logdir, run, data_provider=None, experiment_id=None):
        self.logdir = logdir
        self.run = run
        self.run_dir = run_dir_of(logdir, run)
        if not os.path.isdir(self.run_dir):
            raise RunNotFound("run %r: directory %s does not exist" % (run, self.run_dir))
        self._provider = data_provider
        self._experiment_id = experiment_id
        self._lock = threading.RLock()
        self._per_step = {}
        self.checkpoints = Checkpoints(self.run_dir)

    # -- checkpoints ---------------------------------------------------------
    @property
    def checkpoint_steps(self):
        return list(self.checkpoints.steps)

    @property
    def latest_step(self):
        return self.checkpoints.latest_step

    def checkpoint_prefix(self, step=None):
        return self.checkpoints.prefix(step)

    # -- graph ----------------------------------------------------------------
    @_lazy
    def _graph(self):
        """(GraphDef, source, MetaGraphDef or None)."""
        graph_def = meta = None
        if self._provider is not None:
            try:
                graph_def = events.read_provider_graph(self._provider, self._experiment_id, self.run)
            except RunError:
                raise
            except Exception:  # the provider failed: read the files ourselves
                graph_def = None
            if graph_def is not None:
                return graph_def, "events", self._side_meta()
        graph_def, meta = events.read_event_graphs(self.run_dir)
        if graph_def is not None:
            return graph_def, "events", meta or self._side_meta()
        path = graphfiles.find_graph_file(self.run_dir)
        if path is not None:
            return graphfiles.read_graph_file(path), os.path.basename(path), self._side_meta()
        meta = self._side_meta(required=True)
        if meta is not None:
            return meta.graph_def, "meta", meta
        saved = os.path.join(self.run_dir, graphfiles.SAVED_MODEL_FILE)
        if os.path.isfile(saved):
            meta = graphfiles.read_saved_model(saved)
            return meta.graph_def, "saved_model", meta
        return None, None, None

    def _side_meta(self, required=False):
        """The `.meta` next to the checkpoint: the graph itself (required) or only its
        collections (trainable flags), when a broken one must not hide a good graph."""
        path = self.checkpoints.meta_path()
        if not path:
            return None
        try:
            return graphfiles.read_meta(path)
        except RunError:
            if required:
                raise
            return None

    @property
    def graph_def(self):
        """tensorboard GraphDef, or None when the run has no graph."""
        return self._graph[0]

    @property
    def graph_source(self):
        return self._graph[1]

    @property
    def meta_graph_def(self):
        """MetaGraphDef of the `.meta` / SavedModel (collections, signatures), or None."""
        return self._graph[2]

    def graph_bytes(self):
        """Serialized GraphDef for the converter (TF's GraphDef.FromString reads it)."""
        return self.graph_def.SerializeToString() if self.graph_def is not None else None

    def meta_graph_bytes(self, blank_version=True):
        """Serialized MetaGraphDef (or None). `meta_info_def.tensorflow_version` is blanked by
        default: TF 2.21's import_meta_graph rejects old ones such as "0.12.head"."""
        meta = self.meta_graph_def
        if meta is None:
            return None
        if blank_version and meta.meta_info_def.tensorflow_version:
            copy = type(meta)()
            copy.CopyFrom(meta)
            copy.meta_info_def.tensorflow_version = ""
            copy.meta_info_def.tensorflow_git_version = ""
            meta = copy
        return meta.SerializeToString()

    @_lazy
    def ir(self):
        """GraphIR of the graph (None when the run has no graph)."""
        if self.graph_def is None:
            return None
        return GraphIR(self.graph_def, signature=_signature(self.meta_graph_def))

    # -- variables and roles ---------------------------------------------------
    def _step_key(self, step):
        return self.checkpoints.resolve(step) if self.checkpoints.steps else None

    def variables(self, step=None):
        """VariableInfo list for the checkpoint at `step` (latest when None)."""
        key = self._step_key(step)
        with self._lock:
            cached = self._per_step.get(("vars", key))
            if cached is None:
                shapes = dtypes = None
                if key is not None:
                    reader = self.checkpoints.reader(key)
                    shapes, dtypes = reader.shapes, reader.dtypes
                if self.ir is None and shapes is None:
                    cached = []
                else:
                    cached = link_variables(self.ir, shapes, dtypes, self.meta_graph_def)
                self._per_step[("vars", key)] = cached
        return cached

    def variable(self, name, step=None):
        for info in self.variables(step):
            if info.name == name:
                return info
        raise NotFound("run %r has no variable %r" % (self.run, name))

    def read_variable(self, name, step=None, layout="logical"):
        """Value of a variable at `step`; partitions joined ("logical": mod lookups re-permuted,
        "checkpoint": parts concatenated as stored)."""
        info = self.variable(name, step)
        if not info.checkpoint_keys:
            raise NotFound("run %r: variable %r is not in the checkpoint %s"
                           % (self.run, name, self.checkpoint_prefix(step)))
        reader = self.checkpoints.reader(step)
        values = [reader.read(k) for k in info.checkpoint_keys]
        if len(info.nodes) > 1 or len(values) > 1:
            if layout == "checkpoint":
                from dataclasses import replace

                info = replace(info, partition_strategy=None)
            return join_partitions(info, values)
        return values[0]

    def roles(self, step=None):
        """{variable name: RoleGuess}."""
        key = self._step_key(step)
        with self._lock:
            cached = self._per_step.get(("roles", key))
            if cached is None:
                cached = infer_roles(self.ir, self.variables(step))
                self._per_step[("roles", key)] = cached
        return cached

    # -- inference subgraph and JSON --------------------------------------------
    def default_io(self):
        """(input placeholder nodes, output tensors)."""
        if self.ir is None:
            return [], []
        return self.ir.default_io()

    def forward_nodes(self, inputs=None, outputs=None):
        """Names of the nodes of the inference subgraph (defaults or explicit IO)."""
        if self.ir is None:
            return []
        return [self.ir.node_list[i].name for i in sorted(self.ir.forward_set(inputs, outputs))]

    def graph_json(self, inputs=None, outputs=None):
        """The `/graph` response (http_api.md); cached for the default IO."""
        if self.ir is None:
            raise NotFound("run %r has no graph (no graph event, graph.pbtxt, graph.pb, .meta or "
                           "saved_model.pb)" % self.run)
        if inputs is None and outputs is None:
            with self._lock:
                if "graph_json" not in self._per_step:
                    self._per_step["graph_json"] = self._graph_json(None, None)
                return self._per_step["graph_json"]
        return self._graph_json(inputs, outputs)

    def _graph_json(self, inputs, outputs):
        # variable names come from the graph and its save ops: no checkpoint (no TF) needed
        with self._lock:
            if "graph_vars" not in self._per_step:
                self._per_step["graph_vars"] = link_variables(self.ir, None, None, self.meta_graph_def)
        variable_of = {node: info.name for info in self._per_step["graph_vars"] for node in info.nodes}
        return self.ir.to_json(self.run, self.graph_source, variable_of, inputs, outputs)


def graph_json(run_data, inputs=None, outputs=None):
    return run_data.graph_json(inputs, outputs)


def _signature(meta):
    """Signature candidates [(key, method, input tensors, output tensors)] of a MetaGraphDef:
    its signature_defs (SavedModel) and a session bundle's `serving_signatures`; None if none.
    GraphIR picks one (see ir.py)."""
    if meta is None:
        return None
    found = []
    for key in sorted(meta.signature_def):
        sig = meta.signature_def[key]
        ins = [sig.inputs[k].name for k in sorted(sig.inputs) if sig.inputs[k].name]
        outs = [sig.outputs[k].name for k in sorted(sig.outputs) if sig.outputs[k].name]
        found.append((key, sig.method_name, ins, outs))
    collection = meta.collection_def.get("serving_signatures") if meta.collection_def else None
    if collection is not None:
        for item in collection.any_list.value:
            if item.type_url.endswith("tensorflow.serving.Signatures"):
                try:
                    found.extend(_session_bundle_signatures(bytes(item.value)))
                except (ValueError, IndexError):
                    pass  # not what the name says: no signature from it
    return found or None


def _session_bundle_signatures(data):
    """Candidates from a session bundle's `tensorflow.serving.Signatures` (manifest.proto of
    TF Serving's session_bundle; decoded from the wire format, the proto is not shipped):
    default_signature (regression/classification) and named_signatures, where the generic
    pair named "inputs" / "outputs" is the predict signature."""
    fields = _proto_fields

    def binding(b):  # TensorBinding {tensor_name}
        return next((v.decode() for n, v in fields(b) if n == 1), "")

    def generic(b):
        pairs = []
        for n, entry in fields(b):
            if n == 1:
                kv = dict(fields(entry))
                pairs.append((kv.get(1, b"").decode(), binding(kv.get(2, b""))))
        return [t for _, t in sorted(pairs) if t]

    def signature(key, b):
        for n, body in fields(b):
            kv = dict(fields(body))
            if n == 1:  # RegressionSignature {input, output}
                return (key, "regress", [binding(kv.get(1, b""))], [binding(kv.get(2, b""))])
            if n == 2:  # ClassificationSignature {input, classes, scores}
                outs = [binding(kv[k]) for k in (3, 2) if k in kv]
                return (key, "classify", [binding(kv.get(1, b""))], outs)
        return None

    out, named = [], {}
    for n, value in fields(data):
        if n == 1:
            out.append(signature("serving_default", value))
        elif n == 2:
            kv = dict(fields(value))
            named[kv.get(1, b"").decode()] = kv.get(2, b"")
    generic_of = {}
    for key, b in named.items():
        body = dict(fields(b))
        if 3 in body:
            generic_of[key] = generic(body[3])
        else:
            out.append(signature(key, b))
    if "inputs" in generic_of and "outputs" in generic_of:
        out.append(("inputs/outputs", "predict", generic_of["inputs"], generic_of["outputs"]))
    return [(k, m, [t for t in i if t], [t for t in o if t]) for k, m, i, o in filter(None, out)]


def _proto_fields(buf):
    """[(field number, value)] of a serialized protobuf message: varints as int,
    length-delimited fields as bytes (fixed-width ones as bytes too)."""
    out, i, n = [], 0, len(buf)

    def varint(i):
        shift = value = 0
        while True:
            byte = buf[i]
            value |= (byte & 0x7F) << shift
            i += 1
            if byte < 0x80:
                return value, i
            shift += 7
            if shift > 63:
                raise ValueError("bad varint")

    while i < n:
        key, i = varint(i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(i)
        elif wire == 2:
            size, i = varint(i)
            if i + size > n:
                raise ValueError("truncated field")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = buf[i:i + size], i + size
        else:
            raise ValueError("unsupported wire type %d" % wire)
        out.append((number, value))
    return out


# -- discovery -----------------------------------------------------------------------
_graph_event_cache = {}
_cache_lock = threading.Lock()


def _has_graph_event(run_dir):
    for path in events.event_files(run_dir):
        try:
            st = os.stat(path)
        except OSError:
            continue
        key = (path, st.st_size, st.st_mtime_ns)
        with _cache_lock:
            hit = _graph_event_cache.get(key)
        if hit is None:
            hit = False
            try:
                for data in events.records(path):
                    if events._top_fields(data) & {4, 9}:
                        hit = True
                        break
            except OSError:
                hit = False
            with _cache_lock:
                _graph_event_cache[key] = hit
        if hit:
            return True
    return False


def is_run_dir(path, names=None):
    """True when `path` holds a graph or a checkpoint of its own."""
    if names is None:
        try:
            names = os.listdir(path)
        except OSError:
            return False
    if any(n in names for n in graphfiles.GRAPH_FILES) or graphfiles.SAVED_MODEL_FILE in names:
        return True
    if any(n.endswith(".meta") for n in names) or scan(path):
        return True
    return any("tfevents" in n for n in names) and _has_graph_event(path)


def discover_runs(logdir):
    """Sorted run names of a logdir: "." for the logdir itself, "a/b" for nested dirs.
    Never `varmap` output folders, SavedModel `variables/` folders or summary-only dirs."""
    if not os.path.isdir(logdir):
        raise RunNotFound("logdir %s does not exist" % logdir)
    runs = []
    for root, dirs, files in os.walk(logdir):
        dirs[:] = sorted(d for d in dirs if d != metadata.OUTPUT_DIRNAME and not d.startswith("."))
        if graphfiles.SAVED_MODEL_FILE in files and "variables" in dirs:
            dirs.remove("variables")
        if is_run_dir(root, files):
            rel = os.path.relpath(root, logdir)
            runs.append("." if rel == "." else rel.replace(os.sep, "/"))
    return sorted(runs, key=lambda r: (r != ".", r))
