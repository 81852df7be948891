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


@keras.saving.register_keras_serializable(package="tb_varmap")
class BroadcastLayerNorm(keras.layers.Layer):
    """Layer norm over `axis` whose gamma/beta cover fewer axes and broadcast (tf_slim /
    contrib layer_norm's default: normalize all non-batch axes, per-channel params), which
    keras.layers.LayerNormalization cannot hold without untying the params. Computes as
    tf.nn.batch_normalization does: x * inv + (beta - mean * inv), inv = rsqrt(var + eps)
    * gamma."""

    def __init__(self, axis, epsilon, param_shape, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.axis = [int(a) for a in axis]
        self.epsilon = float(epsilon)
        self.param_shape = [int(d) for d in param_shape]
        self.center = bool(center)
        self.scale = bool(scale)

    def build(self, input_shape=None):
        shape = tuple(self.param_shape)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones",
                                     trainable=True) if self.scale else None
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros",
                                    trainable=True) if self.center else None
        self.built = True

    def call(self, x):
        import tensorflow as tf

        mean, var = tf.nn.moments(x, self.axis, keepdims=True)
        inv = tf.math.rsqrt(var + tf.cast(self.epsilon, x.dtype))
        if self.gamma is not None:
            inv = inv * self.gamma
        shift = -mean * inv if self.beta is None else self.beta - mean * inv
        return x * inv + shift

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis, epsilon=self.epsilon, param_shape=self.param_shape,
                      center=self.center, scale=self.scale)
        return config
