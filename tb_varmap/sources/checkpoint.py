"""Checkpoints of a run directory: steps, prefixes, and lazy per-tensor reading.

Steps come from the files actually present (V2 `<prefix>.index` + `.data-*`, V1
`<prefix>-NNNNN-of-NNNNN` shards or a bare V1 file next to its `.meta`, a SavedModel's
`variables/variables`). The `checkpoint` state file only decides which prefix wins a
step and is otherwise advisory: a stale one naming missing files is ignored.
TensorFlow is imported only when a reader is opened.
"""
import os
import re
import threading

from tb_varmap.sources import RunError

STATE_FILE = "checkpoint"
_STEP = re.compile(r"-(\d+)$")
_V1_SHARD = re.compile(r"^(.+)-(\d{5})-of-(\d{5})$")
_STATE_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"\s*$')


def step_of(prefix):
    """Global step encoded in a prefix name (`model.ckpt-100` → 100); 0 when none."""
    match = _STEP.search(os.path.basename(prefix))
    return int(match.group(1)) if match else 0


def read_state(run_dir):
    """Basenames named by the `checkpoint` state file: (latest or None, all listed)."""
    path = os.path.join(run_dir, STATE_FILE)
    latest, listed = None, []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, []
    for line in lines:
        match = _STATE_LINE.match(line)
        if not match:
            continue
        name = os.path.basename(match.group(2).replace("\\", "/").rstrip("/"))
        if match.group(1) == "model_checkpoint_path":
            latest = name
        elif name not in listed:
            listed.append(name)
    return latest, listed


def scan(run_dir):
    """{base name: prefix path as TF wants it} for every readable checkpoint in run_dir."""
    try:
        names = set(os.listdir(run_dir))
    except OSError:
        return {}
    found = {}
    data_bases = {n.split(".data-")[0] for n in names if ".data-" in n}
    for name in names:
        if name.endswith(".index") and name[: -len(".index")] in data_bases:
            found[name[: -len(".index")]] = os.path.join(run_dir, name[: -len(".index")])
    for name in sorted(names):
        match = _V1_SHARD.match(name)
        if match and not match.group(1).endswith(".data") and match.group(1) not in found:
            base = match.group(1)
            found[base] = os.path.join(run_dir, "%s-?????-of-%s" % (base, match.group(3)))
    for name in names:  # a bare V1 file next to its .meta (`export` + `export.meta`)
        if name.endswith(".meta"):
            base = name[: -len(".meta")]
            if base in names and base not in found and os.path.isfile(os.path.join(run_dir, base)):
                found[base] = os.path.join(run_dir, base)
    if "saved_model.pb" in names:
        var_dir = os.path.join(run_dir, "variables")
        if os.path.isfile(os.path.join(var_dir, "variables.index")):
            found["variables/variables"] = os.path.join(var_dir, "variables")
    return found


class CheckpointReader:
    """Lazy access to one checkpoint: names, shapes and dtypes without tensor data."""

    def __init__(self, prefix):
        self.prefix = prefix
        self._lock = threading.Lock()
        import tensorflow as tf  # lazy: listing runs and graphs never needs TF

        try:
            self._reader = tf.train.load_checkpoint(prefix)
            self.shapes = {k: list(v) for k, v in self._reader.get_variable_to_shape_map().items()}
            self.dtypes = {k: v.name for k, v in self._reader.get_variable_to_dtype_map().items()}
        except Exception as e:
            raise RunError("cannot read checkpoint %s: %s" % (prefix, _first_line(e))) from e

    def read(self, key):
        """The value stored under `key` as a numpy array."""
        if key not in self.shapes:
            raise KeyError(key)
        with self._lock:
            try:
                return self._reader.get_tensor(key)
            except Exception as e:
                raise RunError("cannot read %r from checkpoint %s: %s" % (key, self.prefix, _first_line(e))) from e


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


class Checkpoints:
    """All checkpoints of one run directory, by step."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        found = scan(run_dir)
        state_latest, state_all = read_state(run_dir)
        self.stale_state = [n for n in ([state_latest] if state_latest else []) + state_all if n not in found]
        preferred = [n for n in [state_latest] + state_all if n in found]
        self.prefixes = {}
        for base in preferred + sorted(found):
            self.prefixes.setdefault(step_of(base), found[base])
        self.bases = {step: os.path.basename(p) for step, p in self.prefixes.items()}
        self.steps = sorted(self.prefixes)
        self.latest_step = self.steps[-1] if self.steps else None
        self._readers = {}
        self._lock = threading.Lock()

    def resolve(self, step=None):
        """The step meant by `step` (None → latest); NotFound-style RunError if absent."""
        if not self.steps:
            raise RunError("%s holds no checkpoint (expected <prefix>.index + .data files)" % self.run_dir)
        if step is None:
            return self.latest_step
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise RunError("checkpoint step %r is not an integer" % (step,)) from None
        if step not in self.prefixes:
            from tb_varmap.errors import NotFound

            raise NotFound("%s has no checkpoint for step %d (steps: %s)" % (self.run_dir, step, self.steps))
        return step

    def prefix(self, step=None):
        return self.prefixes[self.resolve(step)]

    def reader(self, step=None):
        step = self.resolve(step)
        with self._lock:
            if step not in self._readers:
                self._readers[step] = CheckpointReader(self.prefixes[step])
            return self._readers[step]

    def meta_path(self, step=None):
        """The `.meta` written next to the checkpoint of `step` (or any .meta), or None."""
        candidates = []
        if self.steps:
            base = self.prefixes[self.resolve(step)]
            base = re.sub(r"-(\d{5}|\?{5})-of-\d{5}$", "", base)
            candidates.append(base + ".meta")
        try:
            metas = sorted(n for n in os.listdir(self.run_dir) if n.endswith(".meta"))
        except OSError:
            metas = []
        metas.sort(key=lambda n: step_of(n[: -len(".meta")]), reverse=True)
        candidates += [os.path.join(self.run_dir, n) for n in metas]
        for path in candidates:
            if os.path.isfile(path):
                return path
        return None
