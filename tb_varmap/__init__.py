"""tb_varmap: port TF1 model_dirs to Keras 3 from TensorBoard, verified layer by layer.

After `import tb_varmap`, `keras.saving.load_model(path)` loads exported models: the custom
layers register as soon as Keras is imported (now, or later in whatever order), so this
import itself stays light for TensorBoard's start-up and the CLI.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def export(logdir, run=".", **kwargs):
    """Export a run to Keras; returns (model, report). See tb_varmap.export_run.export."""
    from tb_varmap import export_run

    return export_run.export(logdir, run, **kwargs)


def _register_layers():
    try:
        from tb_varmap.convert import layers  # noqa: F401  (registers serializables)
    except ImportError:  # keras missing: reading and tagging still work
        pass


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Registers the custom layers right after `keras` finishes importing."""

    def find_spec(self, name, path, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_layers()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    _register_layers()
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
