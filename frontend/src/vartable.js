// Variables table: sortable, filterable by role / unresolved, totals per role.
import { h, clear, fmt } from "./dom.js";
import { roleColor } from "./colors.js";

const COLS = [
  ["variable", "variable"],
  ["role", "role"],
  ["shape", "shape"],
  ["confidence", "conf."],
  ["source", "source"],
];

export class VarTable {
  constructor(host, cb) {
    this.cb = cb;
    this.sort = { col: "variable", dir: 1 };
    this.filter = { role: "", text: "", weightsOnly: true };
    this.selected = null;
    this.roleSel = h("select.vt-role", { onchange: () => { this.filter.role = this.roleSel.value; this.render(); }, title: "filter by role" });
    this.text = h("input.vt-text", { placeholder: "filter variables", oninput: () => { this.filter.text = this.text.value; this.render(); } });
    this.weights = h("input", { type: "checkbox", checked: true, onchange: () => { this.filter.weightsOnly = this.weights.checked; this.render(); } });
    this.totals = h("div.vt-totals");
    this.body = h("tbody");
    this.head = h("tr");
    host.append(
      h("div.vt-filters", {}, this.roleSel, this.text, h("label.vt-w", { title: "hide optimizer slots, EMA and counters" }, this.weights, "weights only")),
      this.totals,
      h("div.vt-scroll", {}, h("table.vt", {}, h("thead", {}, this.head), this.body))
    );
  }

  setData(variables, edits) {
    this.variables = variables;
    this.edits = edits;
    this.render();
  }

  roleOf(v) {
    return this.edits.roleOf(v);
  }

  render() {
    if (!this.variables) return;
    const vars = this.variables;
    // Totals per current role (weights only; others are "ignore").
    const totals = new Map();
    let unresolved = 0;
    for (const v of vars) {
      if (v.kind !== "weight") continue;
      const r = this.roleOf(v);
      if (!r) unresolved++;
      else totals.set(r, (totals.get(r) || 0) + 1);
    }
    const cur = this.filter.role;
    clear(this.roleSel).append(
      h("option", { value: "" }, "all roles"),
      h("option", { value: "__unresolved" }, `unresolved (${unresolved})`),
      ...[...totals.keys()].sort().map((r) => h("option", { value: r }, `${r} (${totals.get(r)})`))
    );
    this.roleSel.value = cur;
    clear(this.totals).append(
      h("span.chip.unres" + (unresolved ? "" : ".zero"), { onclick: () => this.setRoleFilter("__unresolved"), title: "show unresolved" }, `unresolved ${unresolved}`),
      ...[...totals.keys()].sort().map((r) =>
        h("span.chip", { style: { borderColor: roleColor(r) }, onclick: () => this.setRoleFilter(r), title: "filter by " + r }, `${r} ${totals.get(r)}`))
    );
    clear(this.head).append(...COLS.map(([k, label]) =>
      h("th", { onclick: () => { this.sort = { col: k, dir: this.sort.col === k ? -this.sort.dir : 1 }; this.render(); }, class: this.sort.col === k ? "sorted" : "" },
        label, this.sort.col === k ? (this.sort.dir > 0 ? " ▲" : " ▼") : "")));
    const text = this.filter.text.toLowerCase();
    const rows = vars.filter((v) => {
      if (this.filter.weightsOnly && v.kind !== "weight") return false;
      const r = this.roleOf(v);
      if (cur === "__unresolved" && (r || v.kind !== "weight")) return false;
      if (cur && cur !== "__unresolved" && r !== cur) return false;
      return !text || v.variable.toLowerCase().includes(text);
    });
    const key = (v) => {
      switch (this.sort.col) {
        case "role": return this.roleOf(v) || "\uffff";
        case "shape": return (v.shape || []).reduce((a, b) => a * b, 1);
        case "confidence": return v.confidence ?? -1;
        case "source": return v.source || "";
        default: return v.variable;
      }
    };
    rows.sort((a, b) => {
      const ka = key(a), kb = key(b);
      return (ka < kb ? -1 : ka > kb ? 1 : 0) * this.sort.dir;
    });
    clear(this.body).append(...rows.map((v) => {
      const r = this.roleOf(v);
      const edited = this.edits.isEdited(v.variable);
      return h("tr" + (v.variable === this.selected ? ".sel" : "") + (edited ? ".edited" : "") + (r || v.kind !== "weight" ? "" : ".unres"),
        { "data-variable": v.variable, onclick: () => this.cb.onSelect(v) },
        h("td.vname", { title: v.variable }, edited ? "• " : "", v.variable),
        h("td", {}, h("span.rolechip", { style: { background: roleColor(r) } }), r || "unresolved"),
        h("td.mono", {}, v.shape ? `[${v.shape.join(",")}]` : "?"),
        h("td", {}, edited ? "" : fmt(v.confidence)),
        h("td", {}, edited ? "edited" : v.source || ""));
    }));
    if (!rows.length) this.body.append(h("tr", {}, h("td.muted", { colSpan: 5 }, "no variables match")));
  }

  setRoleFilter(r) {
    this.filter.role = this.filter.role === r ? "" : r;
    this.render();
  }

  select(name) {
    this.selected = name;
    for (const tr of this.body.querySelectorAll("tr.sel")) tr.classList.remove("sel");
    const tr = name && this.body.querySelector(`tr[data-variable="${CSS.escape(name)}"]`);
    if (tr) {
      tr.classList.add("sel");
      tr.scrollIntoView({ block: "nearest" });
    }
  }
}
