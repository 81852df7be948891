"""GraphIR: edges, machinery, default IO, forward set, scopes, the /graph JSON."""
import json
import time

import pytest
import tensorflow as tf
from tensorboard.compat.proto import graph_pb2

from tb_varmap.ir import GraphIR, parse_input

v1 = tf.compat.v1


def _training_graph(use_resource=False):
    """x → dense(relu) → logits → probs, with labels, a loss, Adam, a Saver and summaries."""
    g = tf.Graph()
    with g.as_default(), v1.variable_scope("", use_resource=use_resource):
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        keep = v1.placeholder_with_default(1.0, [], name="keep_prob")
        with v1.variable_scope("hidden"):
            w = v1.get_variable("kernel", [4, 8])
            b = v1.get_variable("bias", [8])
            h = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w), b))
        h = tf.nn.dropout(h, rate=1.0 - keep)
        with v1.variable_scope("logits"):
            w2 = v1.get_variable("kernel", [8, 3])
            logits = tf.matmul(h, w2)
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
                              name="total_loss")
        v1.summary.scalar("loss", loss)
        v1.summary.merge_all()
        step = v1.train.get_or_create_global_step()
        v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        v1.train.Saver()
        v1.global_variables_initializer()
    return g


@pytest.fixture(scope="module", params=[False, True], ids=["ref", "resource"])
def training_ir(request):
    return GraphIR(_training_graph(request.param).as_graph_def())


def test_parse_input():
    assert parse_input("a/b:2") == ("a/b", 2, False)
    assert parse_input("^init") == ("init", 0, True)
    assert parse_input("x") == ("x", 0, False)


def test_edges_and_consumers(training_ir):
    ir = training_ir
    matmul = ir.nodes["hidden/MatMul"]
    assert [ir.node_list[i].name for i in matmul.inputs][0] == "x"
    assert (matmul.index, 0) in ir.consumers[ir.nodes["x"].index]
    init = ir.nodes["init"]
    assert init.control and not init.inputs


def test_machinery_marks_training_parts(training_ir):
    ir, mach = training_ir, training_ir.machinery
    for name in ("hidden/MatMul", "logits/MatMul", "probs", "x", "hidden/kernel"):
        assert not mach[ir.nodes[name].index], name
    machinery = [n.name for n in ir.node_list if mach[n.index]]
    assert any(n.startswith("gradients/") for n in machinery)
    assert any(n.startswith("save/") for n in machinery)
    assert "hidden/kernel/Adam" in machinery and "beta1_power" in machinery
    assert all(mach[ir.nodes[n].index] for n in ("init", "Adam/learning_rate"))
    assert mach[ir.nodes["loss"].index]  # the scalar summary
    assert not any(mach[n.index] for n in ir.node_list if n.name.startswith("gradients") is False
                   and n.op == "MatMul")


def test_default_io_prefers_predictions_and_drops_labels(training_ir):
    inputs, outputs = training_ir.default_io()
    assert outputs == ["probs:0"]
    assert inputs == ["x"]  # not the labels, not keep_prob (a PlaceholderWithDefault)


def test_forward_set_between_inputs_and_outputs(training_ir):
    ir = training_ir
    names = {ir.node_list[i].name for i in ir.forward_set()}
    assert {"x", "hidden/MatMul", "logits/MatMul", "probs"} <= names
    assert not any(n.startswith(("gradients", "save", "Adam")) for n in names)
    assert "total_loss" not in names and "labels" not in names
    # explicit IO: stop at the hidden layer's output
    relu = [n.name for n in ir.node_list if n.op == "Relu"][0]
    names = {ir.node_list[i].name for i in ir.forward_set(["x"], [relu + ":0"])}
    assert "hidden/MatMul" in names and "logits/MatMul" not in names


def test_loss_only_graph_uses_the_logits():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="features")
        target = v1.placeholder(tf.float32, [None, 2], name="target")
        w = v1.get_variable("w", [4, 2])
        pred = tf.matmul(x, w, name="fc")
        loss = tf.reduce_mean(tf.square(pred - target), name="mse")
        v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    inputs, outputs = GraphIR(g.as_graph_def()).default_io()
    assert (inputs, outputs) == (["features"], ["fc:0"])


def test_signature_overrides_guess():
    g = _training_graph()
    ir = GraphIR(g.as_graph_def(), signature=(["x:0"], ["logits/MatMul:0"]))
    assert ir.default_io() == (["x"], ["logits/MatMul:0"])


def test_scopes_tree(training_ir):
    ir = training_ir
    scopes, node_scope = ir.scopes()
    by_name = {s["name"]: s for s in scopes}
    assert scopes[0] == {"id": 0, "name": "", "parent": None, "node_count": len(ir),
                         "machinery": False}
    hidden = by_name["hidden"]
    assert by_name["hidden/kernel"]["parent"] == hidden["id"]
    assert node_scope[ir.nodes["hidden/MatMul"].index] == hidden["id"]
    assert hidden["node_count"] == sum(1 for n in ir.node_list if n.name.startswith("hidden/"))
    assert by_name["gradients"]["machinery"] and by_name["save"]["machinery"]
    assert not hidden["machinery"]


def test_graph_json_schema(training_ir):
    ir = training_ir
    data = ir.to_json("run1", "events", {"hidden/kernel": "hidden/kernel"})
    text = json.dumps(data, allow_nan=False)  # strict JSON
    data = json.loads(text)
    assert set(data) == {"run", "source", "node_count", "nodes", "scopes", "inputs", "outputs"}
    assert data["node_count"] == len(data["nodes"]) == len(ir)
    assert data["outputs"] == ["probs:0"]
    nodes = data["nodes"]
    assert [n["id"] for n in nodes] == list(range(len(nodes)))
    byname = {n["name"]: n for n in nodes}
    mm = byname["hidden/MatMul"]
    assert set(mm) == {"id", "name", "op", "scope", "inputs", "control_inputs", "attrs", "variable",
                       "machinery", "forward"}
    assert nodes[mm["inputs"][0]]["name"] == "x"
    assert mm["attrs"]["transpose_a"] is False and mm["attrs"]["T"] == "float32"
    assert mm["forward"] and not mm["machinery"]
    assert byname["hidden/kernel"]["variable"] == "hidden/kernel"
    assert byname["x"]["attrs"]["shape"] == [None, 4]
    assert data["scopes"][mm["scope"]]["name"] == "hidden"
    assert byname["init"]["control_inputs"] and byname["init"]["machinery"]


def _synthetic(n_layers):
    """A 8-nodes-per-layer MLP GraphDef written directly as protos (no TF)."""
    g = graph_pb2.GraphDef()
    g.node.add(name="x", op="Placeholder").attr["dtype"].type = 1
    prev = "x"
    for i in range(n_layers):
        s = "model/block_%d/dense" % i
        for var in ("kernel", "bias"):
            g.node.add(name="%s/%s" % (s, var), op="VariableV2").attr["dtype"].type = 1
            g.node.add(name="%s/%s/read" % (s, var), op="Identity", input=["%s/%s" % (s, var)])
        g.node.add(name=s + "/MatMul", op="MatMul", input=[prev, s + "/kernel/read"]).attr["T"].type = 1
        g.node.add(name=s + "/BiasAdd", op="BiasAdd", input=[s + "/MatMul", s + "/bias/read"])
        g.node.add(name=s + "/Relu", op="Relu", input=[s + "/BiasAdd"])
        g.node.add(name="gradients/%s/MatMul_grad" % s, op="MatMul", input=[s + "/Relu", s + "/kernel/read"])
        prev = s + "/Relu"
    g.node.add(name="probs", op="Softmax", input=[prev])
    return g


def test_graph_json_is_fast_for_100k_nodes():
    graph_def = _synthetic(12500)
    assert len(graph_def.node) > 100_000
    start = time.perf_counter()
    ir = GraphIR(graph_def)
    data = ir.to_json(".", "events")
    elapsed = time.perf_counter() - start
    assert data["node_count"] == len(graph_def.node)
    assert data["outputs"] == ["probs:0"] and data["inputs"] == ["x"]
    forward = sum(n["forward"] for n in data["nodes"])
    assert forward == 1 + 12500 * 7 + 1  # everything but the gradient ops
    assert elapsed < 20, elapsed  # ~5 s on 2 slow cores; a per-node regex storm takes minutes


def test_function_bodies_are_parsed():
    g = tf.Graph()
    with g.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        w = v1.get_variable("w", [4, 4], use_resource=True)

        @tf.function
        def f(t):
            return tf.matmul(t, w)

        tf.identity(f(x), name="y")
    ir = GraphIR(g.as_graph_def())
    call = [n for n in ir.node_list if n.op == "StatefulPartitionedCall"][0]
    (body, first), = ir.calls(call)
    assert first == 0 and len(body.args) == 2
    matmul = [n for n in body.node_list if n.op == "MatMul"][0]
    assert body.node_list[matmul.inputs[0]].name == body.args[0]
    assert ir.default_io() == (["x"], ["y:0"])


def test_tower_gradients_are_machinery():
    """Multi-tower training graphs put each tower's backward pass in <tower>/gradients/…."""
    from tensorboard.compat.proto import graph_pb2

    from tb_varmap.ir import GraphIR

    gd = graph_pb2.GraphDef()
    for name, op, inputs in [
        ("x", "Placeholder", []),
        ("tower_0/model/relu", "Relu", ["x"]),
        ("tower_0/gradients/tower_0/model/relu_grad/ReluGrad", "ReluGrad", ["x", "tower_0/model/relu"]),
        ("tower_0/gradients_1/Fill", "Fill", ["x"]),
    ]:
        node = gd.node.add(name=name, op=op)
        node.input.extend(inputs)
    ir = GraphIR(gd)
    machinery = {node.name: ir.machinery[node.index] for node in ir.node_list}
    assert machinery["tower_0/model/relu"] is False
    assert machinery["tower_0/gradients/tower_0/model/relu_grad/ReluGrad"] is True
    assert machinery["tower_0/gradients_1/Fill"] is True


def _serving_graph():
    """A TF Serving-style export: tf_example (string) → ParseExample → x = identity → a*x + b."""
    g = tf.Graph()
    with g.as_default():
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        x = tf.identity(parsed["x"], name="x")
        a = v1.get_variable("a", [], initializer=v1.constant_initializer(0.5))
        b = v1.get_variable("b", [], initializer=v1.constant_initializer(2.0))
        tf.add(a * x, b, name="y")
        v1.train.Saver()
    return g.as_graph_def()


def test_serialized_example_front_end_gives_way_to_the_parsed_feature():
    ir = GraphIR(_serving_graph())
    assert ir.default_io() == (["x"], ["y:0"])
    assert ir.to_json("r", "meta")["inputs"] == ["x"]
    parse = [n for n in ir.node_list if n.op.startswith("ParseExample")]
    assert parse and not any(n.index in ir.forward_set() for n in parse)
    # a signature that feeds the serialized example gets the same model input
    assert GraphIR(_serving_graph(), signature=(["tf_example:0"], ["y:0"])).default_io() == (["x"], ["y:0"])


def test_signature_choice_prefers_numeric_inputs_then_serving_default():
    gd = _serving_graph()
    sigs = [("serving_default", "tensorflow/serving/classify", ["tf_example:0"], ["y:0"]),
            ("predict_y", "tensorflow/serving/predict", ["x:0"], ["y:0"])]
    assert GraphIR(gd, signature=sigs).default_io() == (["x"], ["y:0"])
    sigs = [("a_regress", "tensorflow/serving/regress", ["x:0"], ["x:0"]),
            ("serving_default", "tensorflow/serving/predict", ["x:0"], ["y:0"])]
    assert GraphIR(gd, signature=sigs).default_io() == (["x"], ["y:0"])
    sigs = [("b", "tensorflow/serving/regress", ["x:0"], ["y:0"]),
            ("a", "tensorflow/serving/predict", ["x:0"], ["missing:0"])]  # not in the graph: skipped
    assert GraphIR(gd, signature=sigs).default_io() == (["x"], ["y:0"])


def test_inputs_follow_explicit_outputs(training_ir):
    ir = training_ir
    assert ir.inputs_for(["hidden/Relu:0"]) == ["x"]
    assert set(ir.inputs_for(["total_loss:0"])) == {"x", "labels"}
    data = ir.to_json("r", "events", outputs=["hidden/Relu:0"])
    assert data["inputs"] == ["x"]
