// Unsaved tag edits: what counts as an edit, the PUT body, the conflict diff.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TagEdits } from "../src/tags.js";

const stored = { format_version: 1, revision: 3, inputs: ["x"], outputs: ["y:0"],
  variables: { "d/kernel": { role: "dense.kernel", layer: "fc1", trainable: true } } };
const kernel = { variable: "d/kernel", role: "dense.kernel", inferred_role: "dense.kernel", source: "tag" };
const bias = { variable: "d/bias", role: "dense.bias", inferred_role: "dense.bias", source: "inferred" };

test("picking the current role is not an edit; another role is", () => {
  const e = new TagEdits();
  e.reset(stored);
  e.setRole(bias, "dense.bias");
  assert.equal(e.count, 0);
  e.setRole(bias, "custom.param");
  assert.equal(e.count, 1);
  assert.equal(e.roleOf(bias), "custom.param");
  e.setRole(bias, "dense.bias");
  assert.equal(e.count, 0);
});

test("the PUT body keeps stored fields, sends base_revision and null to drop a tag", () => {
  const e = new TagEdits();
  e.reset(stored);
  e.setRole(kernel, "custom.param");
  e.setRole(bias, "custom.param");
  e.outputs = ["z:0"];
  const b = e.body();
  assert.equal(b.base_revision, 3);
  assert.deepEqual(b.variables["d/kernel"], { role: "custom.param", layer: "fc1", trainable: true });
  assert.deepEqual(b.variables["d/bias"], { role: "custom.param" });
  assert.deepEqual(b.outputs, ["z:0"]);
  assert.ok(!("inputs" in b));
  e.setRole(kernel, null);
  assert.equal(e.body().variables["d/kernel"], null);
  assert.equal(e.roleOf(kernel), "dense.kernel"); // back to the inferred role
});

test("conflict diff shows stored vs mine; rebase keeps mine on the new revision", () => {
  const e = new TagEdits();
  e.reset(stored);
  e.setRole(bias, "custom.param");
  const current = { ...stored, revision: 4, variables: { ...stored.variables, "d/bias": { role: "constant" } } };
  assert.deepEqual(e.diff(current), [{ what: "d/bias", stored: "constant", mine: "custom.param" }]);
  e.rebase(current);
  assert.equal(e.body().base_revision, 4);
  assert.equal(e.body().variables["d/bias"].role, "custom.param");
});
