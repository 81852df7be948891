"""Verification results into <run>/varmap/: TensorBoard scalars/histograms + report.json.

Scalars (step = export attempt), shown by TensorBoard's own dashboards as run `<run>/varmap`:
  varmap/max_abs_error/<layer>              isolated per-layer max abs error (worst call)
  varmap/cumulative_max_abs_error/<layer>   the same, whole model from the inputs
  varmap/output/<name>/max_abs_error
  varmap/gradient/<variable>/max_abs_error
  varmap/passed                             1 or 0
Histograms (from the report's output samples): varmap/output/<name>/original, .../keras,
.../difference. An error that could not be computed (null) is written as NaN, infinite as inf.
"""

import datetime
import json
import os
import re

import numpy as np

from tb_varmap import metadata
from tb_varmap.fileio import write_json_atomic
from tb_varmap.errors import BadInput


def output_dir(run_dir):
    return os.path.join(run_dir, metadata.OUTPUT_DIRNAME)


def report_path(run_dir):
    return os.path.join(output_dir(run_dir), metadata.REPORT_FILENAME)


def _tag(*parts):
    """A summary tag: characters TF would rewrite become '_'."""
    return "/".join(re.sub(r"[^-/\w.]", "_", str(p)) for p in parts)


def _scalar(x):
    if x is None:
        return float("nan")
    if isinstance(x, str):
        return float(x) if x in ("inf", "-inf") else float("nan")
    return float(x)


def _per_layer(rows, kind):
    """{layer: max abs error} over the rows of `kind`; a layer bound several times (one
    Keras layer called per time step) gets its worst call, NaN if any call FAILED."""
    out = {}
    for row in rows:
        if kind not in row:
            continue
        value = _scalar(row[kind].get("max_abs"))
        old = out.get(row["layer"])
        out[row["layer"]] = value if old is None else (
            float("nan") if np.isnan(old) or np.isnan(value) else max(old, value))
    return out


def _floats(values):
    return np.asarray([_scalar(v) for v in values], dtype=np.float64)


def write_verification(run_dir, report, attempt):
    """Write the summaries of `report` at step `attempt`, and report.json atomically.

    `report` is the whole report (http_api.md "report") or just its "verification" part.
    Returns the dict written to report.json."""
    import tensorflow as tf

    if not isinstance(report, dict):
        raise BadInput(f"run '{run_dir}': report must be a dict, got {type(report).__name__}")
    full = dict(report) if "verification" in report else {"verification": report}
    full.setdefault("format_version", metadata.REPORT_FORMAT_VERSION)
    full["attempt"] = int(attempt)
    full.setdefault("created", datetime.datetime.now(datetime.timezone.utc)
                    .isoformat(timespec="seconds"))
    ver = full.get("verification") or {}
    out = output_dir(run_dir)
    os.makedirs(out, exist_ok=True)
    step = int(attempt)
    writer = tf.summary.create_file_writer(out)
    try:
        with writer.as_default():
            for kind, prefix in (("isolated", "varmap/max_abs_error"),
                                 ("cumulative", "varmap/cumulative_max_abs_error")):
                for layer, value in _per_layer(ver.get("layers", []), kind).items():
                    tf.summary.scalar(_tag(prefix, layer), value, step=step)
            for row in ver.get("outputs", []):
                name = row["name"]
                tf.summary.scalar(_tag("varmap/output", name, "max_abs_error"),
                                  _scalar(row.get("max_abs")), step=step)
                smp = row.get("sample")
                if smp:
                    orig, keras = _floats(smp["original"]), _floats(smp["keras"])
                    tf.summary.histogram(_tag("varmap/output", name, "original"),
                                         orig[np.isfinite(orig)], step=step)
                    tf.summary.histogram(_tag("varmap/output", name, "keras"),
                                         keras[np.isfinite(keras)], step=step)
                    if orig.shape == keras.shape:
                        diff = keras - orig
                        tf.summary.histogram(_tag("varmap/output", name, "difference"),
                                             diff[np.isfinite(diff)], step=step)
            for row in ver.get("gradients", []):
                tf.summary.scalar(_tag("varmap/gradient", row["variable"], "max_abs_error"),
                                  _scalar(row.get("max_abs")), step=step)
            if "passed" in ver:
                tf.summary.scalar("varmap/passed", 1.0 if ver["passed"] else 0.0, step=step)
        writer.flush()
    finally:
        writer.close()
    write_json_atomic(report_path(run_dir), full)
    return full


def read_report(run_dir):
    """The stored report.json as a dict, or None when there is none."""
    path = report_path(run_dir)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BadInput(f"report file '{path}': not readable JSON ({e})") from None


def next_attempt(run_dir):
    """1 + the attempt of the stored report (1 when there is none)."""
    try:
        report = read_report(run_dir)
    except BadInput:
        report = None
    attempt = report.get("attempt") if isinstance(report, dict) else None
    return int(attempt) + 1 if isinstance(attempt, int) and attempt >= 0 else 1
