"""Converter boundary types (see docs/ARCHITECTURE.md, "Converter contract")."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class VariableBinding:
    name: str                    # VariableInfo.name
    read_tensors: list           # tensors through which the value enters the graph
    role: str                    # final role after tags (ROLES name); "" = unknown
    trainable: bool
    value: np.ndarray            # exact checkpoint value


@dataclass
class LayerBinding:
    layer: str                   # Keras layer name in the model
    keras_class: str             # "Dense", "VarMapOp", ...
    tf_nodes: list               # TF nodes this layer covers
    tf_inputs: list              # TF tensors feeding the layer, in call order
    tf_outputs: list             # TF tensors the layer's outputs correspond to
    variables: list = field(default_factory=list)  # [{"variable", "role", "weight"}]
    standard: bool = True


@dataclass
class Conversion:
    model: Any                   # keras.Model
    layers: list                 # list[LayerBinding]
    report: dict                 # JSON-safe conversion report
    # weight path -> {variable name: flat index into the variable per weight element, -1
    # where the element comes from elsewhere}; only for re-laid-out weights (LSTM gates...)
    index_maps: dict = field(default_factory=dict)
