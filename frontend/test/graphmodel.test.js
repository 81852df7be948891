// Unit tests of the pure graph bookkeeping: `npm test` (node --test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { indexGraph, visibleGraph, initialExpansion, revealNode, searchNodes, variablesUnder, representative } from "../src/graphmodel.js";

// x -> dense/MatMul(dense/kernel/read) -> dense/BiasAdd(dense/bias/read) -> probs; plus gradients.
function graph() {
  const scopes = [
    { id: 0, name: "", parent: null, node_count: 11, machinery: false },
    { id: 1, name: "dense", parent: 0, node_count: 6, machinery: false },
    { id: 2, name: "dense/kernel", parent: 1, node_count: 1, machinery: false },
    { id: 3, name: "dense/bias", parent: 1, node_count: 1, machinery: false },
    { id: 4, name: "gradients", parent: 0, node_count: 2, machinery: true },
  ];
  const n = (id, name, op, scope, inputs, extra = {}) =>
    ({ id, name, op, scope, inputs, control_inputs: [], attrs: {}, variable: null, machinery: false, forward: true, ...extra });
  const nodes = [
    n(0, "x", "Placeholder", 0, []),
    n(1, "dense/kernel", "VariableV2", 1, [], { variable: "dense/kernel" }),
    n(2, "dense/kernel/read", "Identity", 2, [1]),
    n(3, "dense/bias", "VariableV2", 1, [], { variable: "dense/bias" }),
    n(4, "dense/bias/read", "Identity", 3, [3]),
    n(5, "dense/MatMul", "MatMul", 1, [0, 2]),
    n(6, "dense/BiasAdd", "BiasAdd", 1, [5, 4]),
    n(7, "probs", "Softmax", 0, [6]),
    n(8, "gradients/g1", "MatMul", 4, [7], { machinery: true, forward: false }),
    n(9, "gradients/g2", "MatMul", 4, [8, 2], { machinery: true, forward: false }),
    n(10, "loss", "Mean", 0, [7], { forward: false }),
  ];
  return indexGraph({ nodes, scopes, inputs: ["x"], outputs: ["probs:0"] });
}

test("a collapsed scope is one box with its edges aggregated", () => {
  const ix = graph();
  const vg = visibleGraph(ix, new Set([0]), false);
  assert.deepEqual([...vg.items.keys()].sort(), ["n0", "n10", "n7", "s1"]);
  assert.equal(vg.items.get("s1").count, 6);
  assert.deepEqual([...vg.edges.values()].map((e) => [e.from, e.to, e.count]).sort(),
    [["n0", "s1", 1], ["n7", "n10", 1], ["s1", "n7", 1]]);
});

test("an expanded scope is a container; read ops fold into their variable", () => {
  const ix = graph();
  const vg = visibleGraph(ix, new Set([0, 1]), false);
  assert.ok(vg.containers.has(1));
  assert.equal(vg.items.get("n5").parent, "s1");
  assert.equal(representative(ix, ix.byId.get(2), new Set([0, 1])), "n1");
  assert.ok(vg.edges.has("n1>n5") && vg.edges.has("n3>n6"));
  assert.ok(!vg.items.has("n2") && !vg.items.has("n4"));
});

test("machinery is hidden unless asked for", () => {
  const ix = graph();
  assert.ok(![...visibleGraph(ix, new Set([0]), false).items.keys()].includes("s4"));
  const vg = visibleGraph(ix, new Set([0, 4]), true);
  assert.ok(vg.items.has("n8") && vg.items.has("n9"));
  assert.ok(vg.edges.has("n7>n8"));
});

test("initial expansion opens forward scopes within the budget only", () => {
  const ix = graph();
  assert.deepEqual([...initialExpansion(ix, false, 50)].sort(), [0, 1]);
  assert.deepEqual([...initialExpansion(ix, false, 4)], [0]);
});

test("revealing a node opens its scopes but not its variable's scope", () => {
  const ix = graph();
  const expanded = new Set([0]);
  revealNode(ix, 2, expanded);
  assert.deepEqual([...expanded].sort(), [0, 1]);
});

test("search ranks exact names, then ops", () => {
  const ix = graph();
  assert.equal(searchNodes(ix, "dense/MatMul")[0].name, "dense/MatMul");
  assert.deepEqual(searchNodes(ix, "matmul").map((n) => n.name).slice(0, 1), ["dense/MatMul"]);
  assert.equal(searchNodes(ix, "softmax")[0].name, "probs");
  assert.deepEqual(searchNodes(ix, "nothing-like-this"), []);
});

test("variablesUnder matches a glob below a scope, weights only", () => {
  const vars = [
    { variable: "a/dense/kernel", kind: "weight" },
    { variable: "a/dense/bias", kind: "weight" },
    { variable: "a/dense/kernel/Adam", kind: "optimizer_slot" },
    { variable: "b/dense/kernel", kind: "weight" },
  ];
  assert.deepEqual(variablesUnder(vars, "a", "*kernel").map((v) => v.variable), ["a/dense/kernel"]);
  assert.deepEqual(variablesUnder(vars, "a", "*").map((v) => v.variable), ["a/dense/kernel", "a/dense/bias"]);
  assert.deepEqual(variablesUnder(vars, "", "bias").map((v) => v.variable), ["a/dense/bias"]);
});
