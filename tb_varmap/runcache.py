"""Run names from clients, checked and mapped to cached RunData objects.

A RunData is reused until the files of its run directory change (name, size, mtime),
so the graph JSON and variable listing of a big run are built once.
"""

import gzip
import json
import os
import threading
import time

from tb_varmap import graphgroups, metadata
from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput, NotFound, RunNotFound, VarMapError

_RUN_LIST_SECONDS = 5
BIG_PAYLOAD_BYTES = 8 * 1024 * 1024


def check_run_name(run):
    """Refuses names that could point outside the logdir; returns the normalized name."""
    if run is None or run == "":
        raise BadInput("a run is needed: ?run=<name> ('.' for the logdir itself)")
    if "\x00" in run or "\\" in run or os.path.isabs(run) or run.startswith("/"):
        raise BadInput("run name %r is not a run of this logdir: expected a relative name like '.' or 'a/b'" % run)
    parts = run.split("/")
    if any(part == ".." for part in parts) or (run != "." and any(p in ("", ".") for p in parts)):
        raise BadInput("run name %r is not a run of this logdir: '..', '.' and empty parts are not allowed" % run)
    return run


def run_dir(logdir, run):
    return logdir if run == "." else os.path.join(logdir, *run.split("/"))


def _signature(directory):
    try:
        entries = []
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name == metadata.OUTPUT_DIRNAME or not entry.is_file():
                    continue
                stat = entry.stat()
                entries.append((entry.name, stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(entries))
    except FileNotFoundError:
        return None


def read_graph_def(run_data):
    """run_data.graph_def, with a reader failure on a damaged file turned into BadInput."""
    try:
        return run_data.graph_def
    except VarMapError:
        raise
    except Exception as e:
        raise BadInput("run %r: its graph could not be read from %s (%s: %s)"
                       % (run_data.run, run_data.run_dir, type(e).__name__, e))


def resolve_step(run_data, step):
    """The checkpoint step to use: the given one (must exist) or the latest."""
    if step is None:
        return run_data.latest_step
    if step not in run_data.checkpoint_steps:
        raise NotFound(
            "run %r has no checkpoint at step %d (steps: %s)" % (run_data.run, step, run_data.checkpoint_steps)
        )
    return step


def model_io(run_data):
    """(inputs, outputs) chosen in the run's tags, each None where the defaults apply."""
    try:
        stored = tags_mod.load_tags(run_data.run_dir)
    except BadInput:  # a broken tag file must not hide the graph
        return None, None
    return stored["inputs"], stored["outputs"]


def encode_graph(run_data, inputs=None, outputs=None):
    """The /graph response body, gzipped once (it is served many times)."""
    graph = graphgroups.group_crowded_levels(run_data.graph_json(inputs, outputs))
    try:
        text = json.dumps(graph, separators=(",", ":"), allow_nan=False)
    except ValueError:  # inf/nan attribute values: spelled as strings, as TensorBoard does
        from tensorboard.backend import json_util

        text = json.dumps(json_util.Cleanse(graph), separators=(",", ":"), allow_nan=False)
    data = text.encode("utf-8")
    # Built once per run version: big graphs pay ~1 s once for ~10 % fewer bytes on the wire.
    level = 9 if len(data) > BIG_PAYLOAD_BYTES else 6
    return gzip.compress(data, compresslevel=level, mtime=0)


class RunCache:
    def __init__(self, logdir, data_provider=None):
        self._logdir = logdir
        self._data_provider = data_provider
        self._lock = threading.Lock()
        self._runs = (0.0, [])
        self._entries = {}
        self._payloads = {}
        self._payload_locks = {}

    def run_names(self):
        from tb_varmap import run as run_mod

        with self._lock:
            checked_at, names = self._runs
            if time.time() - checked_at > _RUN_LIST_SECONDS:
                names = run_mod.discover_runs(self._logdir)
                self._runs = (time.time(), names)
            return list(names)

    def get(self, run, experiment_id=None):
        from tb_varmap import run as run_mod

        run = check_run_name(run)
        if run not in self.run_names():
            with self._lock:
                self._runs = (0.0, [])
            if run not in self.run_names():
                raise RunNotFound("run %r is not a run of logdir %s (runs: %s)" % (run, self._logdir, self.run_names()))
        directory = run_dir(self._logdir, run)
        signature = _signature(directory)
        with self._lock:
            cached = self._entries.get(run)
            if cached and cached[0] == signature:
                return cached[1]
        data = run_mod.RunData(self._logdir, run, data_provider=self._data_provider, experiment_id=experiment_id)
        with self._lock:
            self._entries[run] = (signature, data)
        return data

    def graph_payload(self, run, experiment_id=None):
        """(RunData, gzipped graph JSON), built once per version of the run's files."""
        data = self.get(run, experiment_id=experiment_id)
        if read_graph_def(data) is None:
            raise NotFound("run %r has no graph (no graph event, graph.pbtxt, graph.pb or .meta)" % run)
        with self._lock:
            lock = self._payload_locks.setdefault(run, threading.Lock())
        inputs, outputs = model_io(data)
        io = (tuple(inputs or ()), tuple(outputs or ()))
        with lock:  # concurrent first requests build it once
            cached = self._payloads.get(run)
            if cached is None or cached[0] is not data or cached[1] != io:
                cached = (data, io, encode_graph(data, inputs, outputs))
                self._payloads[run] = cached
        return cached[2]

    def describe(self, run):
        directory = run_dir(self._logdir, run)
        out_dir = tags_mod.output_dir(directory)
        row = {"run": run, "graph_source": None, "checkpoint_steps": [], "latest_step": None}
        try:
            data = self.get(run)
            row.update(
                graph_source=data.graph_source,
                checkpoint_steps=data.checkpoint_steps,
                latest_step=data.latest_step,
            )
        except Exception as e:  # one broken run must not hide the others
            row["error"] = str(e)
        row["has_tags"] = os.path.exists(os.path.join(out_dir, metadata.TAGS_FILENAME))
        row["has_model"] = os.path.exists(os.path.join(out_dir, metadata.MODEL_FILENAME))
        row["has_report"] = os.path.exists(os.path.join(out_dir, metadata.REPORT_FILENAME))
        return row
