"""Synthetic TF1 training GraphDefs of a chosen size, written as TF1 graph events.

Shaped like a multi-tower TF1 training graph (cifar10_multi_gpu style): shared variables
under `model/block_K/{conv,bn}` with `Initializer` subgraphs, `Assign` and `read`; per tower
`tower_T/model/block_K/...` Conv2D/BiasAdd/FusedBatchNormV3/Relu, `tower_T/gradients/...`
mirrors, BN moving-average updates, `average_gradients/...`, Adam slots (`…/Adam`,
`…/Adam_1`) and `Adam/update_…/ApplyAdam`, `save/` SaveV2/RestoreV2/Assign and `init`.
The proto is written directly (no TF ops are built), so 100k nodes take about a second.
"""
import argparse
import os
import socket
import struct
import time

from tensorboard.compat.proto import (attr_value_pb2, event_pb2, graph_pb2, tensor_pb2,
                                      tensor_shape_pb2, types_pb2)

FLOAT, INT32, STRING = types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_STRING


def _shape(dims):
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                  for d in dims])


def _attr(value):
    if isinstance(value, attr_value_pb2.AttrValue):
        return value
    if isinstance(value, bool):
        return attr_value_pb2.AttrValue(b=value)
    if isinstance(value, int):
        return attr_value_pb2.AttrValue(i=value)
    if isinstance(value, float):
        return attr_value_pb2.AttrValue(f=value)
    if isinstance(value, str):
        return attr_value_pb2.AttrValue(s=value.encode())
    raise TypeError(value)


def _type(t):
    return attr_value_pb2.AttrValue(type=t)


def _ints(values):
    return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(i=values))


def _types(values):
    return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(type=values))


def _tensor(dtype, dims, floats=None, ints=None, strings=None, int64s=None):
    t = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=_shape(dims))
    if floats is not None:
        t.float_val.extend(floats)
    if ints is not None:
        t.int_val.extend(ints)
    if int64s is not None:
        t.int64_val.extend(int64s)
    if strings is not None:
        t.string_val.extend(s.encode() for s in strings)
    return attr_value_pb2.AttrValue(tensor=t)


class _Builder:
    def __init__(self):
        self.graph = graph_pb2.GraphDef()
        self.graph.versions.producer = 134
        self.assigns = []        # initializer Assign ops (for `init`)
        self.saved = []          # (variable name, shape) saved by `save/`

    def op(self, name, op, inputs=(), **attrs):
        node = self.graph.node.add(name=name, op=op)
        node.input.extend(inputs)
        for key, value in attrs.items():
            node.attr[key].CopyFrom(_attr(value))
        return name

    def const(self, name, dtype, dims, **values):
        return self.op(name, "Const", value=_tensor(dtype, dims, **values), dtype=_type(dtype))

    def variable(self, name, dims, init="zeros", save=True, dtype=FLOAT):
        """VariableV2 with its initializer subgraph, Assign and read; returns the read tensor."""
        self.op(name, "VariableV2", shape=attr_value_pb2.AttrValue(shape=_shape(dims)),
                dtype=_type(dtype), container="", shared_name="")
        if init == "random":
            base = name + "/Initializer/random_uniform"
            self.const(base + "/shape", INT32, [len(dims)], ints=dims)
            self.const(base + "/min", FLOAT, [], floats=[-0.1])
            self.const(base + "/max", FLOAT, [], floats=[0.1])
            self.op(base + "/RandomUniform", "RandomUniform", [base + "/shape"], T=_type(INT32),
                    dtype=_type(FLOAT), seed=0, seed2=0)
            self.op(base + "/sub", "Sub", [base + "/max", base + "/min"], T=_type(FLOAT))
            self.op(base + "/mul", "Mul", [base + "/RandomUniform", base + "/sub"], T=_type(FLOAT))
            value = self.op(base, "Add", [base + "/mul", base + "/min"], T=_type(FLOAT))
        else:
            value = self.const(name + "/Initializer/" + init, dtype, dims,
                               **({"floats": [1.0 if init == "ones" else 0.0]} if dtype == FLOAT
                                  else {"int64s": [0]}))
        self.assigns.append(self.op(name + "/Assign", "Assign", [name, value], T=_type(dtype),
                                    use_locking=True, validate_shape=True))
        if save:
            self.saved.append((name, dims, dtype))
        return self.op(name + "/read", "Identity", [name], T=_type(dtype),
                       _class=attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(
                           s=[b"loc:@" + name.encode()])))


def _conv_block(b, k, last, channels, towers, x, grads):
    """One conv+bias+bn+relu block on every tower; returns the tower outputs."""
    v = "model/block_%d" % k
    kernel = b.variable(v + "/conv/kernel", [3, 3, channels, channels], "random")
    bias = b.variable(v + "/conv/bias", [channels])
    gamma = b.variable(v + "/bn/gamma", [channels], "ones")
    beta = b.variable(v + "/bn/beta", [channels])
    mean = b.variable(v + "/bn/moving_mean", [channels])
    var = b.variable(v + "/bn/moving_variance", [channels], "ones")
    out = []
    for t in range(towers):
        s = "tower_%d/%s" % (t, v)
        conv = b.op(s + "/conv/Conv2D", "Conv2D", [x[t], kernel], T=_type(FLOAT),
                    strides=_ints([1, 1, 1, 1]), padding="SAME", data_format="NHWC",
                    dilations=_ints([1, 1, 1, 1]), use_cudnn_on_gpu=True)
        biased = b.op(s + "/conv/BiasAdd", "BiasAdd", [conv, bias], T=_type(FLOAT), data_format="NHWC")
        bn = b.op(s + "/bn/FusedBatchNormV3", "FusedBatchNormV3", [biased, gamma, beta, mean, var],
                  T=_type(FLOAT), U=_type(FLOAT), epsilon=0.001, data_format="NHWC", is_training=True,
                  exponential_avg_factor=1.0)
        if t == 0:  # moving averages are updated from the first tower only
            for i, stat in ((1, "moving_mean"), (2, "moving_variance")):
                m = s + "/bn/AssignMovingAvg" + ("" if i == 1 else "_1")
                b.const(m + "/decay", FLOAT, [], floats=[0.001])
                b.op(m + "/sub", "Sub", [v + "/bn/" + stat + "/read", "%s:%d" % (bn, i)], T=_type(FLOAT))
                b.op(m + "/mul", "Mul", [m + "/sub", m + "/decay"], T=_type(FLOAT))
                b.op(m, "AssignSub", [v + "/bn/" + stat, m + "/mul"], T=_type(FLOAT), use_locking=False)
        out.append(b.op(s + "/relu", "Relu", [bn], T=_type(FLOAT)))
        # gradient mirror (emitted now, wired to a placeholder-free upstream name later)
        g = "tower_%d/gradients/%s" % (t, s)
        up = ("tower_%d/gradients/tower_%d/model/pool_grad/truediv" % (t, t) if last else
              "tower_%d/gradients/tower_%d/model/block_%d/conv/Conv2D_grad/tuple/control_dependency"
              % (t, t, k + 1))
        b.op(g + "/relu_grad/ReluGrad", "ReluGrad", [up, out[-1]], T=_type(FLOAT))
        b.op(g + "/bn/FusedBatchNormV3_grad/FusedBatchNormGradV3", "FusedBatchNormGradV3",
             [g + "/relu_grad/ReluGrad", biased, gamma, bn + ":3", bn + ":4", bn + ":5"],
             T=_type(FLOAT), U=_type(FLOAT), epsilon=0.001, data_format="NHWC", is_training=True)
        fb = g + "/bn/FusedBatchNormV3_grad"
        b.op(fb + "/tuple/group_deps", "NoOp", ["^" + fb + "/FusedBatchNormGradV3"])
        for i in range(3):
            b.op(fb + "/tuple/control_dependency" + ("_%d" % i if i else ""), "Identity",
                 [fb + "/FusedBatchNormGradV3:%d" % i, "^" + fb + "/tuple/group_deps"], T=_type(FLOAT))
        gb = g + "/conv/BiasAdd_grad"
        b.op(gb + "/BiasAddGrad", "BiasAddGrad", [fb + "/tuple/control_dependency"], T=_type(FLOAT),
             data_format="NHWC")
        gc = g + "/conv/Conv2D_grad"
        b.op(gc + "/ShapeN", "ShapeN", [x[t], kernel], T=_type(FLOAT), N=2, out_type=_type(INT32))
        b.op(gc + "/Conv2DBackpropInput", "Conv2DBackpropInput",
             [gc + "/ShapeN", kernel, fb + "/tuple/control_dependency"], T=_type(FLOAT),
             strides=_ints([1, 1, 1, 1]), padding="SAME", data_format="NHWC")
        b.op(gc + "/Conv2DBackpropFilter", "Conv2DBackpropFilter",
             [x[t], gc + "/ShapeN:1", fb + "/tuple/control_dependency"], T=_type(FLOAT),
             strides=_ints([1, 1, 1, 1]), padding="SAME", data_format="NHWC")
        b.op(gc + "/tuple/group_deps", "NoOp", ["^" + gc + "/Conv2DBackpropInput",
                                                "^" + gc + "/Conv2DBackpropFilter"])
        b.op(gc + "/tuple/control_dependency", "Identity",
             [gc + "/Conv2DBackpropInput", "^" + gc + "/tuple/group_deps"], T=_type(FLOAT))
        b.op(gc + "/tuple/control_dependency_1", "Identity",
             [gc + "/Conv2DBackpropFilter", "^" + gc + "/tuple/group_deps"], T=_type(FLOAT))
        grads[t][k] = gc + "/tuple/control_dependency"
        grads[t].setdefault("vars", {}).update({
            v + "/conv/kernel": gc + "/tuple/control_dependency_1",
            v + "/conv/bias": gb + "/BiasAddGrad",
            v + "/bn/gamma": fb + "/tuple/control_dependency_1",
            v + "/bn/beta": fb + "/tuple/control_dependency_2",
        })
    return out


def synth_graph(target_nodes, towers=2, channels=64):
    """A GraphDef of about `target_nodes` nodes (within one block, ~0.1k nodes per tower)."""
    one, two = (len(_synth(n, towers, channels).node) for n in (1, 2))
    blocks = max(1, round((target_nodes - one) / (two - one)) + 1)
    return _synth(blocks, towers, channels)


def _synth(blocks, towers, channels):
    b = _Builder()
    b.op("images", "Placeholder", dtype=_type(FLOAT),
         shape=attr_value_pb2.AttrValue(shape=_shape([-1, 32, 32, channels])))
    b.op("labels", "Placeholder", dtype=_type(INT32), shape=attr_value_pb2.AttrValue(shape=_shape([-1])))
    b.const("split/split_dim", INT32, [], ints=[0])
    b.op("split", "Split", ["split/split_dim", "images"], T=_type(FLOAT), num_split=towers)
    b.op("split_1", "Split", ["split/split_dim", "labels"], T=_type(INT32), num_split=towers)
    x = ["split:%d" % t if t else "split" for t in range(towers)]
    b.variable("global_step", [], "zeros", dtype=types_pb2.DT_INT64)
    grads = [{} for _ in range(towers)]
    for k in range(blocks):
        x = _conv_block(b, k, k == blocks - 1, channels, towers, x, grads)
    kernel = b.variable("model/logits/kernel", [channels, 10], "random")
    bias = b.variable("model/logits/bias", [10])
    for t in range(towers):
        s = "tower_%d/model" % t
        b.const(s + "/pool/reduction_indices", INT32, [2], ints=[1, 2])
        b.op(s + "/pool", "Mean", [x[t], s + "/pool/reduction_indices"], T=_type(FLOAT),
             Tidx=_type(INT32), keep_dims=False)
        b.op(s + "/logits/MatMul", "MatMul", [s + "/pool", kernel], T=_type(FLOAT),
             transpose_a=False, transpose_b=False)
        b.op(s + "/logits/BiasAdd", "BiasAdd", [s + "/logits/MatMul", bias], T=_type(FLOAT),
             data_format="NHWC")
        b.op(s + "/probs", "Softmax", [s + "/logits/BiasAdd"], T=_type(FLOAT))
        labels = "split_1:%d" % t if t else "split_1"
        xe = "tower_%d/loss/xent" % t
        b.op(xe, "SparseSoftmaxCrossEntropyWithLogits", [s + "/logits/BiasAdd", labels],
             T=_type(FLOAT), Tlabels=_type(INT32))
        b.const("tower_%d/loss/Const" % t, INT32, [1], ints=[0])
        b.op("tower_%d/loss/Mean" % t, "Mean", [xe, "tower_%d/loss/Const" % t], T=_type(FLOAT),
             Tidx=_type(INT32), keep_dims=False)
        g = "tower_%d/gradients/%s/logits" % (t, s)
        b.op(g + "/MatMul_grad/MatMul_1", "MatMul", [s + "/pool", xe + ":1"], T=_type(FLOAT),
             transpose_a=True, transpose_b=False)
        b.op(g + "/BiasAdd_grad/BiasAddGrad", "BiasAddGrad", [xe + ":1"], T=_type(FLOAT),
             data_format="NHWC")
        b.op(g + "/MatMul_grad/MatMul", "MatMul", [xe + ":1", kernel], T=_type(FLOAT),
             transpose_a=False, transpose_b=True)
        p = "tower_%d/gradients/%s/pool_grad" % (t, s)
        b.const(p + "/Shape", INT32, [4], ints=[-1, 1, 1, channels])
        b.op(p + "/Reshape", "Reshape", [g + "/MatMul_grad/MatMul", p + "/Shape"], T=_type(FLOAT),
             Tshape=_type(INT32))
        b.const(p + "/multiples", INT32, [4], ints=[1, 32, 32, 1])
        b.op(p + "/Tile", "Tile", [p + "/Reshape", p + "/multiples"], T=_type(FLOAT), Tmultiples=_type(INT32))
        b.const(p + "/Const", FLOAT, [], floats=[1024.0])
        b.op(p + "/truediv", "RealDiv", [p + "/Tile", p + "/Const"], T=_type(FLOAT))
        grads[t]["vars"].update({"model/logits/kernel": g + "/MatMul_grad/MatMul_1",
                                 "model/logits/bias": g + "/BiasAdd_grad/BiasAddGrad"})
    # average_gradients over towers, then Adam
    beta1 = b.variable("beta1_power", [], "ones")
    beta2 = b.variable("beta2_power", [], "ones")
    for name, value in (("learning_rate", 0.001), ("beta1", 0.9), ("beta2", 0.999), ("epsilon", 1e-8)):
        b.const("Adam/" + name, FLOAT, [], floats=[value])
    updates = []
    for j, (var, grad0) in enumerate(grads[0]["vars"].items()):
        a = "average_gradients" + ("_%d" % j if j else "")
        for t in range(towers):
            b.const("%s/ExpandDims_%d/dim" % (a, t), INT32, [], ints=[0])
            b.op("%s/ExpandDims_%d" % (a, t), "ExpandDims",
                 [grads[t]["vars"][var], "%s/ExpandDims_%d/dim" % (a, t)], T=_type(FLOAT), Tdim=_type(INT32))
        b.const(a + "/concat/axis", INT32, [], ints=[0])
        b.op(a + "/concat", "ConcatV2", ["%s/ExpandDims_%d" % (a, t) for t in range(towers)]
             + [a + "/concat/axis"], T=_type(FLOAT), N=towers, Tidx=_type(INT32))
        b.const(a + "/Mean/reduction_indices", INT32, [], ints=[0])
        b.op(a + "/Mean", "Mean", [a + "/concat", a + "/Mean/reduction_indices"], T=_type(FLOAT),
             Tidx=_type(INT32), keep_dims=False)
        dims = next(d for n, d, _ in b.saved if n == var)
        b.variable(var + "/Adam", dims)
        b.variable(var + "/Adam_1", dims)
        updates.append(b.op("Adam/update_%s/ApplyAdam" % var, "ApplyAdam",
                            [var, var + "/Adam", var + "/Adam_1", beta1, beta2, "Adam/learning_rate",
                             "Adam/beta1", "Adam/beta2", "Adam/epsilon", a + "/Mean"],
                            T=_type(FLOAT), use_locking=False, use_nesterov=False))
    for i, (power, beta) in enumerate((("beta1_power", "Adam/beta1"), ("beta2_power", "Adam/beta2"))):
        m = "Adam/mul" + ("_%d" % i if i else "")
        b.op(m, "Mul", [power + "/read", beta, *["^" + u for u in updates]], T=_type(FLOAT))
        updates.append(b.op("Adam/Assign" + ("_%d" % i if i else ""), "Assign", [power, m],
                            T=_type(FLOAT), use_locking=False, validate_shape=True))
    b.const("Adam/value", types_pb2.DT_INT64, [], int64s=[1])
    b.op("Adam", "AssignAdd", ["global_step", "Adam/value", *["^" + u for u in updates]],
         T=_type(types_pb2.DT_INT64), use_locking=False)
    # Saver
    names = [n for n, _, _ in b.saved]
    dtypes = _types([t for _, _, t in b.saved])
    b.const("save/filename/input", STRING, [], strings=["model"])
    b.op("save/filename", "PlaceholderWithDefault", ["save/filename/input"], dtype=_type(STRING),
         shape=attr_value_pb2.AttrValue(shape=_shape([])))
    b.op("save/Const", "PlaceholderWithDefault", ["save/filename"], dtype=_type(STRING),
         shape=attr_value_pb2.AttrValue(shape=_shape([])))
    for kind in ("SaveV2", "RestoreV2"):
        b.const("save/%s/tensor_names" % kind, STRING, [len(names)], strings=names)
        b.const("save/%s/shape_and_slices" % kind, STRING, [len(names)], strings=[""] * len(names))
    b.op("save/SaveV2", "SaveV2", ["save/Const", "save/SaveV2/tensor_names", "save/SaveV2/shape_and_slices",
                                   *names], dtypes=dtypes)
    b.op("save/control_dependency", "Identity", ["save/Const", "^save/SaveV2"], T=_type(STRING))
    b.op("save/RestoreV2", "RestoreV2", ["save/Const", "save/RestoreV2/tensor_names",
                                         "save/RestoreV2/shape_and_slices"], dtypes=dtypes)
    restores = [b.op("save/Assign" + ("_%d" % i if i else ""), "Assign",
                     [n, "save/RestoreV2" + (":%d" % i if i else "")], T=_type(t),
                     use_locking=True, validate_shape=True) for i, (n, _, t) in enumerate(b.saved)]
    b.op("save/restore_all", "NoOp", ["^" + r for r in restores])
    b.op("init", "NoOp", ["^" + a for a in b.assigns])
    return b.graph


def write_graph_run(run_dir, graph_def):
    """Writes graph_def as a TF1 graph event (what `FileWriter(graph=...)` writes).

    Plain TFRecord framing with TensorBoard's crc32c (its event writer would import TF)."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    os.makedirs(run_dir, exist_ok=True)
    now = time.time()
    path = os.path.join(run_dir, "events.out.tfevents.%d.%s" % (now, socket.gethostname()))
    events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2"),
              event_pb2.Event(wall_time=now, step=0, graph_def=graph_def.SerializeToString())]
    with open(path, "wb") as f:
        for event in events:
            data = event.SerializeToString()
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + data
                    + struct.pack("<I", masked_crc32c(data)))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a synthetic TF1 training graph as an event file")
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--towers", type=int, default=2)
    ap.add_argument("--out", required=True, help="run directory to write")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    graph = synth_graph(args.nodes, towers=args.towers)
    write_graph_run(args.out, graph)
    print("%d nodes, %.1f MB, %.2f s -> %s" % (len(graph.node), graph.ByteSize() / 1e6,
                                              time.perf_counter() - start, args.out))


if __name__ == "__main__":
    main()
