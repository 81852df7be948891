"""Serializable custom layers the converter emits (TF backend).

Imported by `import tb_varmap` so that `keras.saving.load_model` finds them with
safe_mode on. Configs hold only JSON-safe op names, attrs and weight specs; values
live in Keras weights.
"""

import inspect

import keras

from tb_varmap.convert.attrs import decode_attr


@keras.saving.register_keras_serializable(package="tb_varmap")
class VarMapOp(keras.layers.Layer):
    """Re-runs one TF op through `tf.raw_ops`.

    args: one entry per TF data input, in order:
      {"input": i}   the i-th tensor the layer is called with (a list when >1, else one),
      {"weight": j}  the j-th weight (a checkpoint variable or a graph constant),
      {"const": [...], "dtype", "shape"}  a small integer constant (axes, shapes).
    weight_specs: [{"name", "shape", "dtype", "trainable"}]; values are assigned after build.
    output_indices: which op outputs the layer returns (one → a tensor, more → a list).
    output_shapes: their static shapes from the TF graph (batch dim None), or None each.
    """

    def __init__(self, op, attrs=None, args=None, weight_specs=None, output_indices=(0,),
                 output_shapes=None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.op = op
        self.op_attrs = dict(attrs or {})
        self.args = [dict(a) for a in (args or [])]
        self.weight_specs = [dict(w) for w in (weight_specs or [])]
        self.output_indices = [int(i) for i in output_indices]
        # static shapes TF inferred for the outputs (batch dim free); None = unknown
        self.output_shapes = list(output_shapes or [None] * len(self.output_indices))

    def build(self, input_shape=None):
        self.op_weights = [
            self.add_weight(name=w["name"], shape=tuple(w["shape"]), dtype=w["dtype"],
                            trainable=bool(w["trainable"]), initializer="zeros")
            for w in self.weight_specs]
        self.built = True

    def call(self, inputs):
        import tensorflow as tf
        from tensorflow.python.framework import op_def_registry

        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        op_def = op_def_registry.get(self.op)
        resource = _resource_slots(op_def, self.op_attrs)
        values = []
        for i, a in enumerate(self.args):
            if "input" in a:
                values.append(xs[a["input"]])
            elif "weight" in a:
                value = self.op_weights[a["weight"]].value
                # ops reading a variable handle (ResourceGather, ...) get the handle
                values.append(value.handle if i in resource else value)
            else:
                values.append(tf.reshape(tf.constant(a["const"], dtype=a["dtype"]),
                                         a["shape"]))
        attrs = {k: decode_attr(*v) for k, v in self.op_attrs.items()}
        fn = getattr(tf.raw_ops, self.op)
        # raw_ops take keywords only; inputs come first, in op_def order (some renamed)
        params = list(inspect.signature(fn).parameters)
        kwargs, it = {}, iter(values)
        for arg, pname in zip(op_def.input_arg, params):
            if arg.number_attr:
                kwargs[pname] = [next(it) for _ in range(attrs[arg.number_attr])]
            elif arg.type_list_attr:
                kwargs[pname] = [next(it) for _ in attrs[arg.type_list_attr]]
            else:
                kwargs[pname] = next(it)
        kwargs.update({k: v for k, v in attrs.items() if k in params and k not in kwargs})
        flat = _flatten(fn(**kwargs))
        outs = [flat[i] for i in self.output_indices]
        outs = [o if shape is None else tf.ensure_shape(o, shape)
                for o, shape in zip(outs, self.output_shapes)]
        return outs[0] if len(outs) == 1 else outs

    def get_config(self):
        config = super().get_config()
        config.update(op=self.op, attrs=self.op_attrs, args=self.args,
                      weight_specs=self.weight_specs, output_indices=self.output_indices,
                      output_shapes=self.output_shapes)
        return config


def _resource_slots(op_def, attrs):
    """Flat input positions whose op_def type is DT_RESOURCE."""
    from tensorflow.core.framework import types_pb2

    slots, pos = set(), 0
    for arg in op_def.input_arg:
        n = 1
        if arg.number_attr:
            n = attrs[arg.number_attr][1]
        elif arg.type_list_attr:
            n = len(attrs[arg.type_list_attr][1])
        if arg.type == types_pb2.DT_RESOURCE:
            slots.update(range(pos, pos + n))
        pos += n
    return slots


def _flatten(result):
    if isinstance(result, (list, tuple)):
        out = []
        for r in result:
            out.extend(_flatten(r))
        return out
    return [result]


# custom layers of the legacy families (Gelu), registered with the ones above
from tb_varmap.convert import family_layers  # noqa: E402,F401
