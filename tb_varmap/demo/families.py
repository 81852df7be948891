"""Legacy model families for converter tests: embeddings (plain and partitioned "div"),
dynamic_rnn LSTM/GRU (While loops of control flow v2, or v1 in the "tf1" variant), stacked
cells, sequence_length, time_major, layer norm, slim ResNet, BERT attention, EMA.

Separate from tf1_models/legacy_models (additive): `generate_families(out_dir, models,
variants)` runs the builders in a TF_USE_LEGACY_KERAS=1 subprocess (rnn_cell and tf_slim
need tf_keras), the calling process never gets their TF state. Each model_dir gets an event
file with the graph and a Saver checkpoint `model.ckpt-<step>`. Values are seeded random
(not trained) except "fam_ema", trained with Adam + ExponentialMovingAverage.

Variants (run name = model name + suffix):
  ref       ""           variable_scope(use_resource=False), control flow v2 (TF 2's
                         default): dense/embedding variables are VariableV2 + /read, but a
                         dynamic_rnn is one `StatelessWhile` op and its cell variables come
                         out as resource variables (VarHandleOp) anyway.
  resource  "_resource"  variable_scope(use_resource=True), control flow v2: every variable
                         is a VarHandleOp + ReadVariableOp.
  tf1       "_tf1"       what TF 1.x wrote: disable_control_flow_v2() +
                         disable_resource_variables() for that build, so a dynamic_rnn is a
                         v1 loop (Enter/Merge/Switch/NextIteration/Exit/LoopCond over
                         TensorArrayV3 + Scatter/Read/Write/Gather) and every variable,
                         RNN cells included, is VariableV2 + /read. Non-RNN families build
                         too (VariableV2, no loops).
Each build sets its own mode (ref/resource get the process's start-up TF 2 defaults back),
so the variants can be built in one process in any order. Without tf1 the ref/resource
graphs are exactly those built before the variant existed; with tf1 builds interleaved they
differ only in the number that ends function names (a process-wide counter, as with any
other choice of models).

    python -m tb_varmap.demo.families --out DIR --models fam_lstm,fam_gru --variant ref,tf1
"""
import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from tb_varmap.errors import BadInput

_MARK = "TB_VARMAP_FAMILIES "
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = 4321
FORGET_BIAS = 0.7          # not the default 1.0, so a missed fold shows


@dataclass
class Family:
    name: str
    inputs: dict               # placeholder -> (shape, None = batch dim, dtype)
    outputs: list              # output tensors
    description: str
    time_major: bool = False   # x is [T, batch, features]; "seq:0" is time-major too

    @property
    def steps(self):
        """T of the sequence input "x" (None for non-sequence families)."""
        shape = self.inputs.get("x", ([], ""))[0]
        axis = 0 if self.time_major else 1
        return shape[axis] if len(shape) == 3 and shape[axis] is not None else None


FAMILIES = {f.name: f for f in [
    Family("fam_embedding", {"ids": ([None, 5], "int64")}, ["y:0"],
           "ids -> embedding_lookup on one [12, 4] table -> mean -> dense(3) -> y"),
    Family("fam_embedding_div", {"ids": ([None, 5], "int64")}, ["y:0"],
           "ids -> embedding [11, 4] in 3 partitions, partition_strategy='div' -> mean "
           "-> dense(3) -> y"),
    Family("fam_embedding_mod", {"ids": ([None, 5], "int64")}, ["y:0"],
           "ids -> embedding [11, 4] in 3 partitions, partition_strategy='mod' -> mean "
           "-> dense(3) -> y"),
    Family("fam_lstm", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           f"x -> dynamic_rnn(LSTMCell(8, forget_bias={FORGET_BIAS})) -> seq (outputs), "
           "final h -> dense(2) -> y"),
    Family("fam_basic_lstm", {"x": ([None, 5, 3], "float32")}, ["y:0"],
           "x -> dynamic_rnn(BasicLSTMCell(8)) -> final h -> dense(2) -> y"),
    Family("fam_gru", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> dynamic_rnn(GRUCell(6)) -> seq, final state -> dense(2) -> y"),
    Family("fam_lstm_stacked", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> dynamic_rnn(MultiRNNCell([LSTMCell(8), LSTMCell(6)])) -> seq, last h "
           "-> dense(2) -> y"),
    Family("fam_lstm_peephole", {"x": ([None, 5, 3], "float32")}, ["y:0"],
           "x -> dynamic_rnn(LSTMCell(8, use_peepholes=True, cell_clip=3)) -> last h -> y"),
    Family("fam_lstm_seqlen", {"x": ([None, 5, 3], "float32"), "lengths": ([None], "int32")},
           ["y:0"], "x, lengths -> dynamic_rnn(LSTMCell(8), sequence_length=lengths) -> "
           "last h -> dense(2) -> y"),
    Family("fam_gru_static", {"x": ([None, 5, 3], "float32")}, ["y:0"],
           "x -> static_rnn(GRUCell(6)) over unstack(x, axis=1) -> last h -> dense(2) -> y"),
    Family("fam_lstm_static_seq", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> static_rnn(MultiRNNCell([BasicLSTMCell(8), BasicLSTMCell(6)])) -> "
           "seq = stack(outputs, axis=1), last h -> dense(2) -> y"),
    Family("fam_bilstm", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> bidirectional_dynamic_rnn(LSTMCell(8), GRUCell(6)) -> seq = concat(fw, bw), "
           "final fw h + bw h -> dense(2) -> y"),
    Family("fam_lstm_proj", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> dynamic_rnn(LSTMCell(8, num_proj=4, proj_clip=0.3)) -> seq, last h -> y"),
    Family("fam_layer_norm", {"x": ([None, 4, 6], "float32")}, ["y:0"],
           "x -> slim.layer_norm (begin_norm_axis=1) -> slim.layer_norm "
           "(begin_norm_axis=-1, BERT style) -> flatten -> dense(3) -> y"),
    Family("fam_slim_resnet", {"x": ([None, 32, 32, 3], "float32")}, ["y:0"],
           "x -> tf_slim.nets.resnet_v1 (root conv2d_same 7x7/2 + max pool, bottleneck "
           "blocks depth 4 and 8, one unit each, batch_norm inference) -> logits(5) -> y"),
    Family("fam_bert_attention", {"x": ([None, 6, 16], "float32"),
                                  "mask": ([None, 6], "float32")}, ["y:0"],
           "BERT layer as TF1 BERT wrote it: tf.layers.dense q/k/v, reshape/transpose, "
           "BatchMatMulV2, softmax with additive mask, dense + residual + layer_norm, "
           "intermediate dense with GELU (tanh form), dense with GELU (erf form) -> y"),
    Family("fam_ema", {"x": ([None, 6], "float32")}, ["y:0"],
           "x -> dense(5) relu -> dense(2) -> y; 4 Adam steps with "
           "ExponentialMovingAverage(0.9) shadows"),
    # added with the tf1 variant (kept last: earlier families' graphs stay as they were)
    Family("fam_gru_seqlen", {"x": ([None, 5, 3], "float32"), "lengths": ([None], "int32")},
           ["seq:0", "y:0"], "x, lengths -> dynamic_rnn(GRUCell(6), sequence_length=lengths) "
           "-> seq (zeros past each length), final state -> dense(2) -> y"),
    Family("fam_lstm_stacked_seqlen", {"x": ([None, 5, 3], "float32"),
                                       "lengths": ([None], "int32")}, ["seq:0", "y:0"],
           f"x, lengths -> dynamic_rnn(MultiRNNCell([LSTMCell(8, forget_bias={FORGET_BIAS}), "
           "LSTMCell(6)]), sequence_length=lengths) -> seq, last h -> dense(2) -> y"),
    Family("fam_lstm_time_major", {"x": ([5, None, 3], "float32")}, ["seq:0", "y:0"],
           "x [T=5, batch, 3] -> dynamic_rnn(LSTMCell(8), time_major=True) -> seq "
           "[T, batch, 8], final h -> dense(2) -> y", time_major=True),
    Family("fam_gru_block_cell", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> dynamic_rnn(GRUBlockCell(6)) (contrib's fused cell: one GRUBlockCell op "
           "per step) -> seq, final h -> dense(2) -> y"),
    Family("fam_basic_rnn", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           "x -> dynamic_rnn(MultiRNNCell([BasicRNNCell(6), BasicRNNCell(4, "
           "activation=relu)])) -> seq, last h -> dense(2) -> y"),
    Family("fam_lstm_block_cell", {"x": ([None, 5, 3], "float32")}, ["seq:0", "y:0"],
           f"x -> dynamic_rnn(LSTMBlockCell(8, forget_bias={FORGET_BIAS})) (contrib's fused "
           "cell: one LSTMBlockCell op per step) -> seq, final h -> dense(2) -> y"),
    Family("fam_bidir_seqlen_dropout", {"x": ([None, 5, 3], "float32"),
                                        "lengths": ([None], "int32")}, ["seq:0", "y:0"],
           "x, lengths -> bidirectional_dynamic_rnn(DropoutWrapper(LSTMCell(6), "
           "output_keep_prob=keep_prob), GRUCell(4), sequence_length=lengths) (bw via "
           "reverse_sequence) -> seq, final fw h + bw h -> dense(2) -> y; keep_prob a "
           "PlaceholderWithDefault(1.0); values as initialized (zero biases, GRU gate "
           "bias 1.0: repeated values)"),
    # tf_slim.nets beyond resnet_v1 (kept last: earlier families' graphs stay as they were)
    Family("fam_slim_resnet_v2", {"x": ([None, 32, 32, 3], "float32")}, ["y:0"],
           "x -> tf_slim.nets.resnet_v2 (pre-activation: root conv2d_same 7x7/2 without "
           "bn + max pool, bottleneck_v2 blocks depth 16 (2 units, the second's shortcut "
           "a 1x1/2 max_pool subsample) and 32 (1 unit), batch_norm preact + postnorm, no "
           "gamma) -> mean pool5 -> logits(5) -> spatial squeeze -> y"),
    Family("fam_slim_inception", {"x": ([None, 75, 75, 3], "float32")}, ["y:0"],
           "x -> tf_slim.nets.inception_v3 (depth_multiplier=0.1, min_depth=8, no aux "
           "logits, is_training=False): Concat of branches, 1x7/7x1 convs, AvgPool SAME, "
           "MaxPool VALID, batch_norm without gamma, dropout at inference -> logits(4) "
           "-> spatial squeeze -> y"),
    Family("fam_slim_mobilenet", {"x": ([None, 24, 24, 3], "float32")}, ["y:0"],
           "x -> tiny MobileNet-style tf_slim net: conv 3x3/2 + batch_norm + relu6, "
           "separable_conv2d depthwise-only (num_outputs=None) + batch_norm, 1x1 conv "
           "+ unfused batch_norm (fused=False), atrous conv 3x3 rate 2 + batch_norm, "
           "atrous separable_conv2d 3x3 rate 2 (depthwise + pointwise, bias) - rate 2 as "
           "SpaceToBatchND/BatchToSpaceND -, avg_pool2d SAME, mean over H, W -> "
           "fully_connected(3) -> y"),
    Family("fam_slim_inception_v2", {"x": ([None, 64, 64, 3], "float32")}, ["y:0"],
           "x -> tf_slim.nets.inception_v2 (depth_multiplier=0.1, min_depth=8, "
           "is_training=False): separable_conv2d 7x7/2 stem (depth_multiplier 2), MaxPool "
           "SAME, Concat of branches, AvgPool, batch_norm without gamma -> logits(4) -> "
           "spatial squeeze -> y"),
    Family("fam_slim_is_training", {"x": ([None, 8, 8, 3], "float32")}, ["y:0"],
           "x -> slim conv2d 3x3 + batch_norm(is_training=t) + relu -> slim.dropout("
           "keep_prob=0.5, is_training=t) -> flatten -> fully_connected(3) -> y; t = "
           "placeholder_with_default(False): conds on it (Switch/Merge in tf1)"),
]}
VARIANTS = ("ref", "resource", "tf1")
SUFFIX = {"ref": "", "resource": "_resource", "tf1": "_tf1"}
# families whose dynamic_rnn becomes a control-flow-v1 loop in the "tf1" variant
DYNAMIC_RNN = ("fam_lstm", "fam_basic_lstm", "fam_gru", "fam_lstm_stacked", "fam_lstm_seqlen",
               "fam_bilstm", "fam_lstm_peephole", "fam_lstm_proj", "fam_gru_seqlen",
               "fam_lstm_stacked_seqlen", "fam_lstm_time_major", "fam_bidir_seqlen_dropout",
               "fam_lstm_block_cell", "fam_basic_rnn", "fam_gru_block_cell")


def run_name(model, variant):
    return model + SUFFIX[variant]


def generate_families(out_dir, models=None, variants=("ref", "resource"), timeout=600):
    """Build `models` (names from FAMILIES; None = all) in `variants` (some of VARIANTS)
    under out_dir, in a TF_USE_LEGACY_KERAS=1 subprocess. Returns {run name: model_dir}."""
    models = list(models or FAMILIES)
    bad = [m for m in models if m not in FAMILIES]
    if bad:
        raise BadInput(f"unknown family model(s) {bad}; expected some of {sorted(FAMILIES)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise BadInput(f"unknown variant(s) {bad}; expected some of {list(VARIANTS)}")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_REPO_ROOT, env.get("PYTHONPATH")] if p)
    cmd = [sys.executable, "-m", "tb_varmap.demo.families", "--out", os.path.abspath(out_dir),
           "--models", ",".join(models), "--variant", ",".join(variants)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"family generator failed (exit {proc.returncode}) writing "
                           f"{out_dir}:\n{proc.stderr[-4000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"family generator wrote no manifest:\n{proc.stdout[-2000:]}")


def sample_feed(name, batch=2, seed=0):
    """Seeded inputs for family `name`: {placeholder: ndarray}. The None dim of each shape
    is the batch (first, or second for time-major x). Int "lengths" are valid sequence
    lengths in 1..T, row 0 full length and row 1 shorter; other ints lie in [0, 11)."""
    import numpy as np

    fam = FAMILIES[name]
    rng = np.random.RandomState(seed)
    feed = {}
    for node, (shape, dtype) in fam.inputs.items():
        full = [batch if d is None else d for d in shape]
        if node == "lengths" and dtype.startswith("int"):
            feed[node] = _lengths(rng, batch, fam.steps).astype(dtype)
        else:
            feed[node] = (rng.randint(0, 11, size=full) if dtype.startswith("int")
                          else rng.randn(*full)).astype(dtype)
    return feed


def _lengths(rng, batch, steps):
    values = rng.randint(1, steps + 1, size=batch)
    if batch >= 1:
        values[0] = steps                        # one full-length row
    if batch >= 2 and steps > 1:
        values[1] = 1 + values[1] % (steps - 1)  # one short row: 1..T-1
    return values


# ---------------------------------------------------------------- builders (subprocess)

def _builders():
    import numpy as np
    import tensorflow as tf

    from tb_varmap.demo.tf1_models import _dense, _scope, _write_graph_events

    v1 = tf.compat.v1

    def cells():
        return v1.nn.rnn_cell

    def save(model_dir, g, step=1, random=True, positive=None, gain=None):
        """gain (deep conv nets): kernels (rank >= 2) scaled by sqrt(gain / fan_in)
        (gain=12: variance 1 / fan_in), so activations stay near 1 over ~100 layers
        instead of growing ~1e9 (unscaled uniform(-0.5, 0.5) kernels)."""
        rng = np.random.RandomState(SEED)
        with g.as_default():
            variables = v1.global_variables()
            saver = v1.train.Saver()
            init = v1.global_variables_initializer()
        with v1.Session(graph=g) as sess:
            sess.run(init)
            if random:
                for var in variables:
                    value = rng.uniform(-0.5, 0.5, var.shape.as_list()).astype(np.float32)
                    if positive and positive in var.op.name:
                        value = np.abs(value) + 0.5
                    if gain and value.ndim >= 2:
                        value *= np.float32(np.sqrt(gain / np.prod(value.shape[:-1])))
                    var.load(value, sess)
            saver.save(sess, os.path.join(model_dir, "model.ckpt"), global_step=step)
        _write_graph_events(model_dir, g).close()

    def embedding(model_dir, variant, parts, strategy):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            ids = v1.placeholder(tf.int64, [None, 5], name="ids")
            kw = {"partitioner": v1.fixed_size_partitioner(parts)} if parts else {}
            table = v1.get_variable("embedding", [11 if parts else 12, 4], **kw)
            emb = v1.nn.embedding_lookup(table, ids, partition_strategy=strategy,
                                         name="lookup")
            h = tf.reduce_mean(emb, axis=1, name="mean")
            tf.identity(_dense(h, 3, "fc", 11), name="y")
        save(model_dir, g)

    def rnn(model_dir, variant, make_cell, seq=True, state_h=None, lengths=False,
            static=False, time_major=False):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [5, None, 3] if time_major else [None, 5, 3],
                               name="x")
            n = v1.placeholder(tf.int32, [None], name="lengths") if lengths else None
            if static:
                outs, state = v1.nn.static_rnn(make_cell(), tf.unstack(x, axis=1),
                                               dtype=tf.float32)
                out = tf.stack(outs, axis=1)
            else:
                out, state = v1.nn.dynamic_rnn(make_cell(), x, sequence_length=n,
                                               dtype=tf.float32, time_major=time_major)
            if seq:
                tf.identity(out, name="seq")
            tf.identity(_dense(state_h(state), 2, "head", 21), name="y")
        save(model_dir, g)

    def bilstm(model_dir, variant):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
            (fw, bw), (sf, sb) = v1.nn.bidirectional_dynamic_rnn(
                cells().LSTMCell(8, forget_bias=FORGET_BIAS), cells().GRUCell(6), x,
                dtype=tf.float32)
            tf.identity(tf.concat([fw, bw], axis=-1), name="seq")
            h = tf.concat([sf.h, sb], axis=-1)
            tf.identity(_dense(h, 2, "head", 51), name="y")
        save(model_dir, g)

    def lstm_block_cell(units, forget_bias):
        class LSTMBlockCell(cells().RNNCell):
            """tf.contrib.rnn.LSTMBlockCell as TF 1.x had it: one LSTMBlockCell op a step,
            variables kernel [in + units, 4 units] (i, ci, f, o) and bias."""

            def __init__(self):
                super().__init__(name="lstm_cell")

            @property
            def state_size(self):
                return cells().LSTMStateTuple(units, units)

            @property
            def output_size(self):
                return units

            def build(self, shape):
                n = int(shape[-1])
                self._w = self.add_weight("kernel", [n + units, 4 * units])
                self._b = self.add_weight("bias", [4 * units],
                                          initializer=v1.zeros_initializer())
                self.built = True

            def call(self, x, state):
                cs, h = state
                peep = tf.zeros([units], x.dtype)
                out = tf.raw_ops.LSTMBlockCell(
                    x=x, cs_prev=cs, h_prev=h, w=self._w, wci=peep, wcf=peep, wco=peep,
                    b=self._b, forget_bias=forget_bias, cell_clip=-1.0, use_peephole=False)
                return out[6], cells().LSTMStateTuple(out[1], out[6])

        return LSTMBlockCell()

    def gru_block_cell(units):
        class GRUBlockCell(cells().RNNCell):
            """tf.contrib.rnn.GRUBlockCell as TF 1.x had it: one GRUBlockCell op a step,
            variables gates/kernel [in + units, 2 units] (r, u), candidate/kernel
            [in + units, units] and their biases."""

            def __init__(self):
                super().__init__(name="gru_cell")

            @property
            def state_size(self):
                return units

            @property
            def output_size(self):
                return units

            def build(self, shape):
                n = int(shape[-1])
                self._w_ru = self.add_weight("gates/kernel", [n + units, 2 * units])
                self._b_ru = self.add_weight("gates/bias", [2 * units],
                                             initializer=v1.ones_initializer())
                self._w_c = self.add_weight("candidate/kernel", [n + units, units])
                self._b_c = self.add_weight("candidate/bias", [units],
                                            initializer=v1.zeros_initializer())
                self.built = True

            def call(self, x, h):
                out = tf.raw_ops.GRUBlockCell(x=x, h_prev=h, w_ru=self._w_ru, w_c=self._w_c,
                                              b_ru=self._b_ru, b_c=self._b_c)
                return out[3], out[3]

        return GRUBlockCell()

    def bidir_seqlen_dropout(model_dir, variant):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 5, 3], name="x")
            n = v1.placeholder(tf.int32, [None], name="lengths")
            keep = v1.placeholder_with_default(1.0, [], name="keep_prob")
            fw = cells().DropoutWrapper(cells().LSTMCell(6), output_keep_prob=keep)
            (of, ob), (sf, sb) = v1.nn.bidirectional_dynamic_rnn(
                fw, cells().GRUCell(4), x, sequence_length=n, dtype=tf.float32)
            tf.identity(tf.concat([of, ob], axis=-1), name="seq")
            tf.identity(_dense(tf.concat([sf.h, sb], axis=-1), 2, "head", 31), name="y")
        save(model_dir, g, random=False)

    def layer_norm(model_dir, variant):
        import tf_keras.src.legacy_tf_layers as legacy_layers
        sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy_layers)
        import tf_slim as slim

        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 4, 6], name="x")
            h = slim.layer_norm(x, scope="ln_all")
            h = slim.layer_norm(h, begin_norm_axis=-1, begin_params_axis=-1, scope="ln_last")
            h = tf.reshape(h, [-1, 24])
            tf.identity(_dense(h, 3, "fc", 31), name="y")
        save(model_dir, g)

    def ema(model_dir, variant):
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 6], name="x")
            t = v1.placeholder(tf.float32, [None, 2], name="target")
            h = tf.nn.relu(_dense(x, 5, "fc1", 41))
            y = tf.identity(_dense(h, 2, "fc2", 43), name="y")
            loss = tf.reduce_mean(tf.square(y - t))
            step = v1.train.get_or_create_global_step()
            opt = v1.train.AdamOptimizer(0.05).minimize(loss, global_step=step)
            ema_obj = v1.train.ExponentialMovingAverage(0.9, num_updates=None)
            with tf.control_dependencies([opt]):
                train = ema_obj.apply(v1.trainable_variables())
            saver = v1.train.Saver()
            shadows = [ema_obj.average(v) for v in v1.trainable_variables()]
            first = v1.variables_initializer(
                [v for v in v1.global_variables() if v not in shadows])
            second = v1.variables_initializer(shadows)
        rng = np.random.RandomState(SEED)
        with v1.Session(graph=g) as sess:
            sess.run(first)        # shadows start from the initialised variables
            sess.run(second)
            for _ in range(4):
                sess.run(train, {x: rng.randn(8, 6), t: rng.randn(8, 2)})
            saver.save(sess, os.path.join(model_dir, "model.ckpt"),
                       global_step=int(sess.run(step)))
        _write_graph_events(model_dir, g).close()

    def slim():
        import tf_keras.src.legacy_tf_layers as legacy_layers
        sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy_layers)
        import tf_slim
        return tf_slim

    def slim_is_training(model_dir, variant):
        slim_ = slim()
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
            training = v1.placeholder_with_default(False, [], name="is_training")
            h = slim_.conv2d(x, 6, [3, 3], normalizer_fn=slim_.batch_norm,
                             normalizer_params={"is_training": training}, scope="conv")
            h = slim_.dropout(h, keep_prob=0.5, is_training=training, scope="dropout")
            h = slim_.fully_connected(slim_.flatten(h), 3, activation_fn=None, scope="fc")
            tf.identity(h, name="y")
        save(model_dir, g, positive="variance")

    def slim_resnet(model_dir, variant):
        slim_ = slim()
        from tf_slim.nets import resnet_v1
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 32, 32, 3], name="x")
            blocks = [resnet_v1.resnet_v1_block("block1", base_depth=4, num_units=1,
                                                stride=2),
                      resnet_v1.resnet_v1_block("block2", base_depth=8, num_units=1,
                                                stride=1)]
            with slim_.arg_scope(resnet_v1.resnet_arg_scope()):
                logits, _ = resnet_v1.resnet_v1(x, blocks, num_classes=5,
                                                is_training=False, scope="resnet")
            tf.identity(tf.reshape(logits, [-1, 5]), name="y")
        save(model_dir, g, positive="variance")

    def slim_resnet_v2(model_dir, variant):
        slim_ = slim()
        from tf_slim.nets import resnet_v2
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 32, 32, 3], name="x")
            blocks = [resnet_v2.resnet_v2_block("block1", base_depth=4, num_units=2,
                                                stride=2),
                      resnet_v2.resnet_v2_block("block2", base_depth=8, num_units=1,
                                                stride=1)]
            # batch_norm as slim defaults it (no gamma); resnet_v1 above keeps the scale
            with slim_.arg_scope(resnet_v2.resnet_arg_scope(batch_norm_scale=False)):
                logits, _ = resnet_v2.resnet_v2(x, blocks, num_classes=5,
                                                is_training=False, scope="resnet_v2")
            tf.squeeze(logits, [1, 2], name="y")         # resnet_v2 keeps [N, 1, 1, 5]
        save(model_dir, g, positive="variance", gain=12)

    def slim_inception(model_dir, variant):
        slim_ = slim()
        from tf_slim.nets import inception_v3
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 75, 75, 3], name="x")
            with slim_.arg_scope(inception_v3.inception_v3_arg_scope()):
                logits, _ = inception_v3.inception_v3(
                    x, num_classes=4, is_training=False, depth_multiplier=0.1,
                    min_depth=8, create_aux_logits=False, scope="InceptionV3")
            tf.identity(logits, name="y")
        save(model_dir, g, positive="variance", gain=12)

    def slim_inception_v2(model_dir, variant):
        slim_ = slim()
        from tf_slim.nets import inception_v2
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 64, 64, 3], name="x")
            with slim_.arg_scope(inception_v2.inception_v2_arg_scope()):
                logits, _ = inception_v2.inception_v2(
                    x, num_classes=4, is_training=False, depth_multiplier=0.1,
                    min_depth=8, scope="InceptionV2")
            tf.identity(logits, name="y")
        save(model_dir, g, positive="variance", gain=12)

    def slim_mobilenet(model_dir, variant):
        slim_ = slim()
        g = tf.Graph()
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 24, 24, 3], name="x")
            bn = {"normalizer_fn": slim_.batch_norm,
                  "normalizer_params": {"is_training": False}}
            with slim_.arg_scope([slim_.conv2d, slim_.separable_conv2d], padding="SAME",
                                 activation_fn=tf.nn.relu6):
                h = slim_.conv2d(x, 8, 3, stride=2, scope="conv0", **bn)
                h = slim_.separable_conv2d(h, None, 3, depth_multiplier=1,
                                           scope="dw1", **bn)
                h = slim_.conv2d(h, 12, 1, scope="pw1", normalizer_fn=slim_.batch_norm,
                                 normalizer_params={"is_training": False, "fused": False})
                h = slim_.conv2d(h, 12, 3, rate=2, scope="atrous3", **bn)
                h = slim_.separable_conv2d(h, 16, 3, depth_multiplier=2, rate=2,
                                           scope="sep2")
            h = slim_.avg_pool2d(h, 3, stride=1, padding="SAME", scope="pool")
            h = tf.reduce_mean(h, [1, 2], name="gap")
            tf.identity(slim_.fully_connected(h, 3, activation_fn=None, scope="logits"),
                        name="y")
        save(model_dir, g, positive="variance", gain=12)

    def bert_attention(model_dir, variant):
        import math
        layers = v1.layers
        g = tf.Graph()
        t, width, heads = 6, 16, 2
        size = width // heads
        with g.as_default(), _scope(variant):
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, t, width], name="x")
            mask = v1.placeholder(tf.float32, [None, t], name="mask")
            flat = tf.reshape(x, [-1, width])

            def heads_first(h):
                return tf.transpose(tf.reshape(h, [-1, t, heads, size]), [0, 2, 1, 3])

            with v1.variable_scope("attention/self"):
                q = heads_first(layers.dense(flat, width, name="query"))
                k = heads_first(layers.dense(flat, width, name="key"))
                v = heads_first(layers.dense(flat, width, name="value"))
                scores = tf.matmul(q, k, transpose_b=True)
                scores = tf.multiply(scores, 1.0 / math.sqrt(float(size)))
                adder = (1.0 - tf.expand_dims(tf.expand_dims(mask, 1), 1)) * -10000.0
                probs = tf.nn.softmax(scores + adder)
                ctx = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
                ctx = tf.reshape(ctx, [-1, width])
            with v1.variable_scope("attention/output"):
                h = layers.dense(ctx, width, name="dense")
                h = slim().layer_norm(h + flat, begin_norm_axis=-1, begin_params_axis=-1,
                                      scope="LayerNorm")
            with v1.variable_scope("intermediate"):
                i = layers.dense(h, 32, name="dense")
                cdf = 0.5 * (1.0 + tf.tanh(math.sqrt(2 / math.pi)
                                           * (i + 0.044715 * tf.pow(i, 3))))
                i = i * cdf
            with v1.variable_scope("output"):
                o = layers.dense(i, width, name="dense")
                o = o * 0.5 * (1.0 + tf.math.erf(o / math.sqrt(2.0)))
            tf.identity(tf.reshape(o, [-1, t, width]), name="y")
        save(model_dir, g)

    def h_of(state):
        return state.h if hasattr(state, "h") else state

    return {
        "fam_embedding": lambda d, v: embedding(d, v, 0, "mod"),
        "fam_embedding_div": lambda d, v: embedding(d, v, 3, "div"),
        "fam_embedding_mod": lambda d, v: embedding(d, v, 3, "mod"),
        "fam_lstm": lambda d, v: rnn(d, v, lambda: cells().LSTMCell(
            8, forget_bias=FORGET_BIAS), state_h=h_of),
        "fam_basic_lstm": lambda d, v: rnn(d, v, lambda: cells().BasicLSTMCell(8),
                                           seq=False, state_h=h_of),
        "fam_gru": lambda d, v: rnn(d, v, lambda: cells().GRUCell(6), state_h=h_of),
        "fam_lstm_stacked": lambda d, v: rnn(d, v, lambda: cells().MultiRNNCell(
            [cells().LSTMCell(8, forget_bias=FORGET_BIAS), cells().LSTMCell(6)]),
            state_h=lambda s: s[-1].h),
        "fam_lstm_peephole": lambda d, v: rnn(d, v, lambda: cells().LSTMCell(
            8, use_peepholes=True, cell_clip=3.0), seq=False, state_h=h_of),
        "fam_lstm_seqlen": lambda d, v: rnn(d, v, lambda: cells().LSTMCell(8), seq=False,
                                            state_h=h_of, lengths=True),
        "fam_gru_seqlen": lambda d, v: rnn(d, v, lambda: cells().GRUCell(6), state_h=h_of,
                                           lengths=True),
        "fam_lstm_stacked_seqlen": lambda d, v: rnn(d, v, lambda: cells().MultiRNNCell(
            [cells().LSTMCell(8, forget_bias=FORGET_BIAS), cells().LSTMCell(6)]),
            state_h=lambda s: s[-1].h, lengths=True),
        "fam_lstm_time_major": lambda d, v: rnn(d, v, lambda: cells().LSTMCell(8),
                                                state_h=h_of, time_major=True),
        "fam_bidir_seqlen_dropout": bidir_seqlen_dropout,
        "fam_gru_block_cell": lambda d, v: rnn(d, v, lambda: gru_block_cell(6),
                                               state_h=h_of),
        "fam_basic_rnn": lambda d, v: rnn(d, v, lambda: cells().MultiRNNCell(
            [cells().BasicRNNCell(6), cells().BasicRNNCell(4, activation=tf.nn.relu)]),
            state_h=lambda s: s[-1]),
        "fam_lstm_block_cell": lambda d, v: rnn(d, v, lambda: lstm_block_cell(
            8, FORGET_BIAS), state_h=h_of),
        "fam_gru_static": lambda d, v: rnn(d, v, lambda: cells().GRUCell(6), seq=False,
                                           state_h=h_of, static=True),
        "fam_lstm_static_seq": lambda d, v: rnn(d, v, lambda: cells().MultiRNNCell(
            [cells().BasicLSTMCell(8), cells().BasicLSTMCell(6)]),
            state_h=lambda st: st[-1].h, static=True),
        "fam_bilstm": bilstm,
        "fam_lstm_proj": lambda d, v: rnn(d, v, lambda: cells().LSTMCell(
            8, num_proj=4, proj_clip=0.3, forget_bias=FORGET_BIAS), state_h=h_of),
        "fam_layer_norm": layer_norm,
        "fam_ema": ema,
        "fam_slim_resnet": slim_resnet,
        "fam_slim_is_training": slim_is_training,
        "fam_bert_attention": bert_attention,
        "fam_slim_resnet_v2": slim_resnet_v2,
        "fam_slim_inception": slim_inception,
        "fam_slim_mobilenet": slim_mobilenet,
        "fam_slim_inception_v2": slim_inception_v2,
    }


def build_all(out_dir, models, variants):
    import shutil

    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise BadInput("family models need TF_USE_LEGACY_KERAS=1 set before TensorFlow "
                       "starts; use generate_families()")
    builders = _builders()
    set_mode = _mode_setter()
    written = {}
    for model in models:
        for variant in variants:
            final = os.path.join(out_dir, run_name(model, variant))
            tmp = final + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            set_mode(variant)
            builders[model](tmp, "ref" if variant == "tf1" else variant)
            with open(os.path.join(tmp, "checkpoint")) as f:
                text = f.read().replace(os.path.abspath(tmp) + os.sep, "")
            with open(os.path.join(tmp, "checkpoint"), "w") as f:
                f.write(text)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            written[run_name(model, variant)] = os.path.abspath(final)
    return written


def _mode_setter():
    """set_mode(variant): the process-wide TF switches one variant's build needs. "tf1":
    control flow v1 and ref variables; "ref"/"resource": the switches as this process
    started (TF 2: control flow v2, resource variables by default; the variant's own
    variable_scope picks ref or resource). The switches are read and set only around tf1
    builds, so a run without tf1 builds exactly the graphs it built before the variant
    existed (reading them creates the default graph, which shifts the function-name
    counter)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    state = {"start": None, "tf1": False}

    def set_mode(variant):
        if variant == "tf1" and not state["tf1"]:
            if state["start"] is None:
                state["start"] = (v1.control_flow_v2_enabled(), v1.resource_variables_enabled())
            v1.disable_control_flow_v2()
            v1.disable_resource_variables()
            state["tf1"] = True
        elif variant != "tf1" and state["tf1"]:
            cf_v2, resource = state["start"]
            (v1.enable_control_flow_v2 if cf_v2 else v1.disable_control_flow_v2)()
            (v1.enable_resource_variables if resource else v1.disable_resource_variables)()
            state["tf1"] = False

    return set_mode


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="logdir to write the model_dirs into")
    ap.add_argument("--models", default=",".join(FAMILIES),
                    help="comma list of family names (default: all)")
    ap.add_argument("--variant", default="ref,resource",
                    help="comma list of %s (default: ref,resource)" % ",".join(VARIANTS))
    args = ap.parse_args(argv)
    try:
        written = build_all(args.out, [m for m in args.models.split(",") if m],
                            [v for v in args.variant.split(",") if v])
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_MARK + json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
