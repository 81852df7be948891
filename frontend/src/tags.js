// Unsaved tag edits on top of the stored tags, and the body PUT tags needs.
export class TagEdits {
  constructor() {
    this.reset(null);
  }

  reset(stored) {
    this.stored = stored || { revision: 0, variables: {}, inputs: null, outputs: null };
    this.roles = new Map(); // variable -> role (string) or null (= drop the tag)
    this.inputs = null; // array when edited
    this.outputs = null;
  }

  get revision() {
    return this.stored.revision || 0;
  }

  get count() {
    return this.roles.size + (this.inputs ? 1 : 0) + (this.outputs ? 1 : 0);
  }

  // v: the /variables entry; role: a ROLES name, or null to drop a stored tag.
  setRole(v, role) {
    if (role === null ? v.source !== "tag" : role === v.role) this.roles.delete(v.variable);
    else this.roles.set(v.variable, role);
  }

  roleOf(v) {
    return this.roles.has(v.variable) ? this.roles.get(v.variable) ?? v.inferred_role ?? null : v.role;
  }

  isEdited(name) {
    return this.roles.has(name);
  }

  currentInputs(fallback) {
    return this.inputs || this.stored.inputs || fallback || [];
  }

  currentOutputs(fallback) {
    return this.outputs || this.stored.outputs || fallback || [];
  }

  body() {
    const variables = {};
    for (const [name, role] of this.roles) {
      variables[name] = role == null ? null : { ...(this.stored.variables?.[name] || {}), role };
    }
    const b = { format_version: this.stored.format_version || 1, base_revision: this.revision, variables };
    if (this.inputs) b.inputs = this.inputs;
    if (this.outputs) b.outputs = this.outputs;
    return b;
  }

  // What the stored tags (now `current`) say vs these edits, for the conflict dialog.
  diff(current) {
    const rows = [];
    for (const [name, role] of this.roles) {
      rows.push({ what: name, stored: current.variables?.[name]?.role ?? "(no tag)", mine: role ?? "(no tag)" });
    }
    if (this.inputs) rows.push({ what: "inputs", stored: (current.inputs || []).join(", "), mine: this.inputs.join(", ") });
    if (this.outputs) rows.push({ what: "outputs", stored: (current.outputs || []).join(", "), mine: this.outputs.join(", ") });
    return rows;
  }

  // Keep my edits but base them on `current` (an explicit user choice).
  rebase(current) {
    const { roles, inputs, outputs } = this;
    this.stored = current;
    this.roles = roles;
    this.inputs = inputs;
    this.outputs = outputs;
  }
}
