"""Atomic writes: a temp file in the target's folder, fsync, then rename into place.

Readers never see a torn file, and a killed writer leaves only a `.tmp-*` file that the
next export removes (export_run.remove_stale_temp_files).
"""

import contextlib
import json
import math
import os
import tempfile

TEMP_PREFIX = ".tmp-"


def json_safe(value):
    """NaN → None, ±inf → "inf"/"-inf", numpy scalars and arrays → Python values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def temp_path(path, suffix=""):
    """A new empty temp file next to `path` (the caller renames or removes it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX + os.path.basename(path) + ".", suffix=suffix, dir=directory)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yields a temp path to write; on success it replaces `path`, on failure it is removed."""
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data):
    text = json.dumps(json_safe(data), indent=1, sort_keys=True, allow_nan=False)
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
