"""TF GraphDef + tagged variables → Keras 3 functional model (see docs/ARCHITECTURE.md)."""

from tb_varmap.convert.bindings import Conversion, LayerBinding, VariableBinding


def convert_graph(graph_def, inputs, outputs, variables, *, name="varmap_model",
                  progress=None):
    """Build a Keras model from the graph between `inputs` and `outputs`; see builder."""
    from tb_varmap.convert.builder import convert_graph as run

    return run(graph_def, inputs, outputs, variables, name=name, progress=progress)


__all__ = ["Conversion", "LayerBinding", "VariableBinding", "convert_graph"]
