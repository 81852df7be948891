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


@keras.saving.register_keras_serializable(package="tb_varmap")
class TfLSTMCell(keras.layers.Layer):
    """tf.compat.v1.nn.rnn_cell.LSTMCell as TF computes it, for what keras LSTMCell lacks:
    peepholes (w_f_diag, w_i_diag, w_o_diag), cell_clip, num_proj (+ proj_clip).
    Weights keep TF's layout: kernel [in + out, 4u] (gates i, j, f, o), bias [4u],
    projection [u, num_proj]. State: [c, h]; use inside keras.layers.RNN."""

    def __init__(self, units, forget_bias=1.0, use_peepholes=False, cell_clip=None,
                 num_proj=None, proj_clip=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.forget_bias = float(forget_bias)
        self.use_peepholes = bool(use_peepholes)
        self.cell_clip = None if cell_clip is None else float(cell_clip)
        self.num_proj = None if num_proj is None else int(num_proj)
        self.proj_clip = None if proj_clip is None else float(proj_clip)
        out = self.num_proj or self.units
        self.state_size = [self.units, out]
        self.output_size = out

    def build(self, input_shape):
        n_in, u, out = int(input_shape[-1]), self.units, self.num_proj or self.units
        self.kernel = self.add_weight(name="kernel", shape=(n_in + out, 4 * u))
        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer="zeros")
        if self.use_peepholes:
            self.w_f_diag = self.add_weight(name="w_f_diag", shape=(u,))
            self.w_i_diag = self.add_weight(name="w_i_diag", shape=(u,))
            self.w_o_diag = self.add_weight(name="w_o_diag", shape=(u,))
        if self.num_proj:
            self.projection = self.add_weight(name="projection", shape=(u, self.num_proj))
        self.built = True

    def call(self, x, states, training=False):
        import tensorflow as tf

        c_prev, m_prev = states[0], states[1]
        z = tf.nn.bias_add(tf.matmul(tf.concat([x, m_prev], 1), self.kernel), self.bias)
        i, j, f, o = tf.split(z, 4, axis=1)
        if self.use_peepholes:
            c = (tf.sigmoid(f + self.forget_bias + self.w_f_diag * c_prev) * c_prev
                 + tf.sigmoid(i + self.w_i_diag * c_prev) * tf.tanh(j))
        else:
            c = tf.sigmoid(f + self.forget_bias) * c_prev + tf.sigmoid(i) * tf.tanh(j)
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            m = tf.sigmoid(o + self.w_o_diag * c) * tf.tanh(c)
        else:
            m = tf.sigmoid(o) * tf.tanh(c)
        if self.num_proj:
            m = tf.matmul(m, self.projection)
            if self.proj_clip is not None:
                m = tf.clip_by_value(m, -self.proj_clip, self.proj_clip)
        return m, [c, m]

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, forget_bias=self.forget_bias,
                      use_peepholes=self.use_peepholes, cell_clip=self.cell_clip,
                      num_proj=self.num_proj, proj_clip=self.proj_clip)
        return config


@keras.saving.register_keras_serializable(package="tb_varmap")
class DynamicRNN(keras.layers.Wrapper):
    """tf.compat.v1.nn.dynamic_rnn's input conventions around a Keras RNN layer, which holds
    every weight (this wrapper has none): `time_major` sequences [time, batch, ...] and,
    with `with_lengths`, a second input `sequence_length` [batch]: steps at or past an
    example's length give zero outputs and keep the state, as TF does (a Keras mask; the
    layer needs zero_output_for_mask when it returns sequences). Call: `DynamicRNN(lstm)(x)` or `(... with_lengths=True)([x,
    lengths])`; outputs are the wrapped layer's, sequences time-major when time_major.
    `reverse_sequences` flips the sequence output along time: a go_backwards layer then
    gives outputs in input order, as TF's bidirectional bw half does after its reverse
    (with lengths: reverse_sequence, which Keras' masked go_backwards matches)."""

    def __init__(self, layer, time_major=False, with_lengths=False, reverse_sequences=False,
                 **kwargs):
        if not isinstance(layer, keras.layers.RNN):
            raise ValueError(f"DynamicRNN wraps a keras.layers.RNN (LSTM, GRU, RNN), got "
                             f"{type(layer).__name__}")
        if with_lengths and layer.return_sequences and not layer.zero_output_for_mask:
            raise ValueError(f"DynamicRNN(with_lengths=True) needs {layer.name!r} built "
                             "with zero_output_for_mask=True (TF writes zeros past the end)")
        super().__init__(layer, **kwargs)
        self.time_major = bool(time_major)
        self.with_lengths = bool(with_lengths)
        self.reverse_sequences = bool(reverse_sequences)

    def build(self, input_shape):
        x_shape = tuple(input_shape[0] if self.with_lengths else input_shape)
        if self.time_major:
            x_shape = (x_shape[1], x_shape[0]) + x_shape[2:]
        if not self.layer.built:
            self.layer.build(x_shape)
        self.built = True

    def call(self, inputs, training=False):
        ops = keras.ops
        x, lengths = inputs if self.with_lengths else (inputs, None)
        if self.time_major:
            x = ops.swapaxes(x, 0, 1)
        mask = None
        if lengths is not None:
            steps = ops.arange(ops.shape(x)[1], dtype="int32")
            lengths = ops.cast(lengths, "int32")
            if len(lengths.shape) == 0:      # one length for every row (BlockLSTM)
                lengths = ops.broadcast_to(lengths, (ops.shape(x)[0],))
            lengths = ops.reshape(lengths, (ops.shape(x)[0],))
            mask = ops.less(steps[None, :], lengths[:, None])
        out = self.layer(x, mask=mask, training=training)
        for t in keras.tree.flatten(out):     # TF passes no mask on: zeros are the output
            _clear_mask(t)
        if not self.layer.return_sequences:
            return out
        seq, rest = (out[0], list(out[1:])) if isinstance(out, (list, tuple)) else (out, None)
        if self.reverse_sequences:
            seq = ops.flip(seq, axis=1)
        if self.time_major:
            seq = ops.swapaxes(seq, 0, 1)
        return seq if rest is None else [seq] + rest

    def get_config(self):
        config = super().get_config()
        config.update(time_major=self.time_major, with_lengths=self.with_lengths,
                      reverse_sequences=self.reverse_sequences)
        return config


def _clear_mask(tensor):
    from keras.src.backend import set_keras_mask

    set_keras_mask(tensor, None)
