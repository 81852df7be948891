"""The per-run tag file: schema, validation, revisions and atomic writes.

`<run_dir>/varmap/tags.json` holds the user's decisions; they override inference.
Every write names the revision it was based on, and a stale one is refused, so two
browser tabs (or a tab and the CLI) never silently overwrite each other.
"""

import contextlib
import copy
import fcntl
import json
import os
import threading

from tb_varmap import metadata
from tb_varmap.fileio import write_json_atomic
from tb_varmap.errors import BadInput, Conflict

MAX_TAGS_BYTES = metadata.MAX_REQUEST_BYTES
WEIGHT_CHOICES = ("raw", "ema")
_VARIABLE_FIELDS = ("role", "layer", "trainable")

_process_lock = threading.Lock()


def output_dir(run_dir):
    return os.path.join(run_dir, metadata.OUTPUT_DIRNAME)


def tags_path(run_dir):
    return os.path.join(output_dir(run_dir), metadata.TAGS_FILENAME)


def empty_tags():
    return {
        "format_version": metadata.TAGS_FORMAT_VERSION,
        "revision": 0,
        "step": None,
        "inputs": None,
        "outputs": None,
        "weights": "raw",
        "variables": {},
    }


def load_tags(run_dir, path=None):
    """Returns the stored tags of a run (revision 0 and nothing tagged if none)."""
    path = path or tags_path(run_dir)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return empty_tags()
    if size > MAX_TAGS_BYTES:
        raise BadInput(
            "tag file %s is %d bytes; at most %d are accepted" % (path, size, MAX_TAGS_BYTES)
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BadInput("tag file %s is not valid JSON: %s" % (path, e))
    return check_schema(data, where="tag file %s" % path, require_revision=True)


def check_schema(data, where, require_revision=False):
    """Checks the structure (not the variables) of a tags object; returns a full copy."""
    if not isinstance(data, dict):
        raise BadInput("%s: expected a JSON object, got %s" % (where, type(data).__name__))
    version = data.get("format_version", metadata.TAGS_FORMAT_VERSION)
    if version != metadata.TAGS_FORMAT_VERSION:
        raise BadInput(
            "%s: format_version %r is not supported; expected %d"
            % (where, version, metadata.TAGS_FORMAT_VERSION)
        )
    unknown = sorted(set(data) - set(empty_tags()) - {"base_revision"})
    if unknown:
        raise BadInput("%s: unknown field(s) %s" % (where, ", ".join(unknown)))
    tags = empty_tags()
    for key in ("revision", "base_revision"):
        value = data.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadInput("%s: %s must be a non-negative integer, got %r" % (where, key, value))
    if require_revision:
        tags["revision"] = data.get("revision", 0)
    step = data.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise BadInput("%s: step must be an integer or null, got %r" % (where, step))
    tags["step"] = step
    for key in ("inputs", "outputs"):
        names = data.get(key)
        if names is not None and (
            not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
        ):
            raise BadInput("%s: %s must be a list of node names or null, got %r" % (where, key, names))
        tags[key] = names
    weights = data.get("weights", "raw")
    if weights not in WEIGHT_CHOICES:
        raise BadInput("%s: weights must be one of %s, got %r" % (where, WEIGHT_CHOICES, weights))
    tags["weights"] = weights
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise BadInput("%s: variables must be an object, got %s" % (where, type(variables).__name__))
    for name, entry in variables.items():
        if entry is None:
            tags["variables"][name] = None
            continue
        if not isinstance(entry, dict):
            raise BadInput("%s: variable %r: expected an object with 'role', got %r" % (where, name, entry))
        extra = sorted(set(entry) - set(_VARIABLE_FIELDS))
        if extra:
            raise BadInput("%s: variable %r: unknown field(s) %s" % (where, name, ", ".join(extra)))
        if not isinstance(entry.get("role"), str):
            raise BadInput("%s: variable %r: 'role' must be a string, got %r" % (where, name, entry.get("role")))
        if "layer" in entry and entry["layer"] is not None and not isinstance(entry["layer"], str):
            raise BadInput("%s: variable %r: 'layer' must be a string, got %r" % (where, name, entry["layer"]))
        if "trainable" in entry and not isinstance(entry["trainable"], bool):
            raise BadInput("%s: variable %r: 'trainable' must be true or false, got %r" % (where, name, entry["trainable"]))
        tags["variables"][name] = dict(entry)
    return tags


def validate(tags, run_data, where="tags"):
    """Checks tags against the run: variables exist, roles exist and fit their shapes."""
    from tb_varmap import roles as roles_mod

    problems = []
    steps = run_data.checkpoint_steps
    if tags["step"] is not None and tags["step"] not in steps:
        problems.append("step %d is not a checkpoint of this run (steps: %s)" % (tags["step"], steps))
    step = tags["step"] if tags["step"] in steps else None
    known = {v.name: v for v in run_data.variables(step)} if steps or run_data.graph_def is not None else {}
    for name, entry in sorted(tags["variables"].items()):
        if entry is None:
            continue
        info = known.get(name)
        if info is None:
            problems.append("variable %r is not in this run's graph or checkpoint" % name)
            continue
        role = entry["role"]
        if role not in roles_mod.ROLES:
            problems.append(
                "%s: unknown role %r (known: %s)" % (name, role, ", ".join(sorted(roles_mod.ROLES)))
            )
            continue
        misfit = roles_mod.check_role_shape(role, info.shape)
        if misfit:
            problems.append("%s: role %r %s, variable has shape %s" % (name, role, misfit, info.shape))
    nodes = run_data.ir.nodes if run_data.graph_def is not None else {}
    for name in tags["inputs"] or []:
        if name.split(":")[0] not in nodes:
            problems.append("input %r is not a node of this run's graph" % name)
    for name in tags["outputs"] or []:
        if name.split(":")[0] not in nodes:
            problems.append("output %r is not a node or tensor of this run's graph" % name)
    if problems:
        raise BadInput("%s rejected: %s" % (where, "; ".join(problems)), problems)


def merge_update(stored, update):
    """Applies a partial update (fields present in `update`) to stored tags."""
    merged = copy.deepcopy(stored)
    for key in ("step", "inputs", "outputs", "weights"):
        if key in update:
            merged[key] = update[key]
    for name, entry in update.get("variables", {}).items():
        if entry is None:
            merged["variables"].pop(name, None)
        else:
            merged["variables"][name] = entry
    return merged


@contextlib.contextmanager
def _locked(run_dir):
    """Serializes writers of one run, across threads and processes."""
    os.makedirs(output_dir(run_dir), exist_ok=True)
    with _process_lock:
        with open(os.path.join(output_dir(run_dir), ".tags.lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def update_tags(run_data, body, where="tags"):
    """Validates and stores a tag update based on `body['base_revision']`; returns new tags.

    Raises Conflict (with the stored tags) when the base revision is stale.
    """
    update = check_schema(body, where=where)
    present = {k: update[k] for k in update if k in body}
    base = body.get("base_revision", 0)
    run_dir = run_data.run_dir
    with _locked(run_dir):
        stored = load_tags(run_dir)
        if base != stored["revision"]:
            raise Conflict(
                "tags of run %r were saved by someone else: your edit is based on revision %d, "
                "the stored one is revision %d" % (run_data.run, base, stored["revision"]),
                current=stored,
            )
        merged = merge_update(stored, present)
        validate(merged, run_data, where=where)
        merged["revision"] = stored["revision"] + 1
        write_json_atomic(tags_path(run_dir), merged)
    return merged


def effective_roles(variables, guesses, tags):
    """Per variable: the role in force, where it came from, and the inference behind it."""
    rows = []
    for info in variables:
        guess = guesses.get(info.name)
        tag = tags["variables"].get(info.name)
        inferred = guess.role if guess else None
        if info.kind != "weight" and inferred is None:
            inferred = "ignore"
        row = {
            "variable": info.name,
            "node": info.node,
            "nodes": list(info.nodes),
            "checkpoint_keys": list(info.checkpoint_keys),
            "shape": None if info.shape is None else list(info.shape),
            "dtype": info.dtype,
            "kind": info.kind,
            "trainable": info.trainable,
            "in_graph": info.in_graph,
            "in_checkpoint": info.in_checkpoint,
            "inferred_role": inferred,
            "confidence": float(guess.confidence) if guess else 0.0,
            "reason": guess.reason if guess else ("%s, not a model weight" % info.kind),
            "layer": guess.layer if guess else None,
            "consumers": list(guess.consumers) if guess else [],
            "role": inferred,
            "source": "inferred",
        }
        if tag:
            row["role"] = tag["role"]
            row["source"] = "tag"
            row["confidence"] = 1.0
            if tag.get("layer"):
                row["layer"] = tag["layer"]
            if "trainable" in tag:
                row["trainable"] = tag["trainable"]
        rows.append(row)
    return rows


def role_totals(rows):
    totals = {}
    for row in rows:
        key = row["role"] or "unresolved"
        totals[key] = totals.get(key, 0) + 1
    totals.setdefault("unresolved", 0)
    return totals
