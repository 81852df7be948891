"""Custom layers for legacy families that no standard Keras layer covers.

Registered (package "tb_varmap") when tb_varmap.convert.layers is imported, so exported
models load with safe_mode on.
"""

import keras


@keras.saving.register_keras_serializable(package="tb_varmap")
class Gelu(keras.layers.Layer):
    """GELU with the tanh approximation (BERT's `gelu`), which keras.layers.Activation
    cannot express: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def __init__(self, approximate=True, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, x):
        return keras.activations.gelu(x, approximate=self.approximate)

    def get_config(self):
        config = super().get_config()
        config.update(approximate=self.approximate)
        return config
