"""tb_varmap: port TF1 model_dirs to Keras 3 from TensorBoard, verified layer by layer.

Importing this package registers the custom Keras layers the exporter may emit, so
`keras.saving.load_model(path)` works after `import tb_varmap`.
"""

import sys

__version__ = "0.1.0"


def export(logdir, run=".", **kwargs):
    """Export a run to Keras; returns (model, report). See tb_varmap.export_run."""
    from tb_varmap import export_run

    return export_run.export(logdir, run, **kwargs)


def _register_layers():
    try:
        from tb_varmap.convert import layers  # noqa: F401  (registers serializables)
    except ImportError:  # keras missing: reading/tagging still works
        pass


# TensorBoard imports this package at start-up to find the plugin; Keras (and so
# TensorFlow) is imported lazily there, and the layers register on the first export.
if not ("tensorboard.program" in sys.modules and "keras" not in sys.modules):
    _register_layers()
