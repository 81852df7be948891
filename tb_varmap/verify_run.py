"""Verify an already exported `.keras` model of a run (the `tb-varmap verify` command).

The layer ↔ TF tensor bindings come from the conversion report written at export time.
"""

import dataclasses
import os

from tb_varmap import metadata
from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput


def _load_report(run_data):
    from tb_varmap import plugin

    try:
        report = plugin.report_impl(run_data)
    except LookupError:
        raise BadInput("run %r has no export report in %s; run `tb-varmap export` first"
                       % (run_data.run, tags_mod.output_dir(run_data.run_dir)))
    if not report.get("conversion", {}).get("layers"):
        raise BadInput("the report of run %r lists no converted layers; export again" % run_data.run)
    return report


def layer_bindings(report):
    from tb_varmap.convert import LayerBinding

    names = {f.name for f in dataclasses.fields(LayerBinding)}
    return [LayerBinding(**{k: v for k, v in layer.items() if k in names}) for layer in report["conversion"]["layers"]]


def verify_saved(run_data, model_path=None, inputs_npz=None, atol=1e-5, rtol=1e-5, progress=None):
    import keras

    from tb_varmap import export_run
    from tb_varmap.convert import Conversion

    progress = progress or export_run._noop_progress
    report = _load_report(run_data)
    model_path = model_path or os.path.join(tags_mod.output_dir(run_data.run_dir), metadata.MODEL_FILENAME)
    if not os.path.isfile(model_path):
        raise BadInput("model file %s does not exist; run `tb-varmap export` first" % model_path)
    progress(0.05, "loading model")
    try:
        model = keras.saving.load_model(model_path)
    except Exception as e:
        raise BadInput("model file %s could not be loaded as a Keras model: %s" % (model_path, e))
    tags = tags_mod.load_tags(run_data.run_dir)
    bindings, _ = export_run.variable_bindings(run_data, report["step"], tags, report.get("weights", "raw"))
    layers = layer_bindings(report)
    index_maps = export_run.load_index_maps(export_run.index_maps_path(model_path))
    rename = _reloaded_paths(report["conversion"].get("weight_paths"), model)
    for lb in layers:
        lb.variables = [dict(v, weight=rename.get(v.get("weight"), v.get("weight"))) for v in lb.variables]
    index_maps = {rename.get(p, p): m for p, m in index_maps.items()}
    conversion = Conversion(model=model, layers=layers, report=report["conversion"], index_maps=index_maps)
    with export_run.naming_run(run_data):
        verify_and_log(run_data, report, bindings, conversion, inputs_npz=inputs_npz, atol=atol,
                       rtol=rtol, progress=lambda f, m: progress(0.1 + 0.88 * f, m))
    progress(1.0, "done")
    return report


def _reloaded_paths(saved_paths, model):
    """{path at export: path now}: a reloaded model names the weights of nested layers
    (a wrapped RNN, a nested Sequential) without their parent's prefix; the order and
    shapes of model.weights are the same, so positions match them up."""
    now = [w.path for w in model.weights]
    if not saved_paths or len(saved_paths) != len(now):
        return {}
    return {old: new for old, new in zip(saved_paths, now) if old != new}


def verify_and_log(run_data, report, bindings, conversion, *, inputs_npz=None, atol=1e-5, rtol=1e-5, progress):
    """Verifies `conversion` against the run's graph, stores the result in `report`
    (verification, attempt) and logs it under <run>/varmap/ (events + report.json)."""
    from tb_varmap import summaries
    from tb_varmap import verify as verify_mod

    from tb_varmap import export_run

    graph_bytes = export_run.graph_for_io(run_data, report["inputs"], report["outputs"])
    progress(0.0, "verifying")
    feed = verify_mod.load_inputs_npz(inputs_npz, graph_bytes, report["inputs"]) if inputs_npz else None
    report["verification"] = verify_mod.verify(
        graph_bytes,
        report["inputs"],
        report["outputs"],
        bindings,
        conversion,
        feed,
        atol=atol,
        rtol=rtol,
        progress=lambda f, m: progress(0.95 * f, m),
    )
    progress(0.97, "logging verification")
    report["attempt"] = summaries.next_attempt(run_data.run_dir)
    summaries.write_verification(run_data.run_dir, report, report["attempt"])
