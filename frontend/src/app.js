// The VarMap panel: state, toolbar, graph, details, tagging, export and verification.
import { api, ApiError } from "./api.js";
import { h, clear, fmt, fmtInt } from "./dom.js";
import { indexGraph, visibleGraph, initialExpansion, revealNode, searchNodes, variablesUnder, scopePath, isHidden } from "./graphmodel.js";
import { layoutGraph } from "./layout.js";
import { GraphView, itemSize } from "./graphview.js";
import { VarTable } from "./vartable.js";
import { TagEdits } from "./tags.js";
import { roleColor, STATUS_COLOR } from "./colors.js";
import { renderVerification, divergingNodes, passed } from "./verifyview.js";
import { readHash, writeHash } from "./hash.js";

const short = (name) => name.split("/").pop();

export class App {
  constructor(root) {
    this.root = root;
    this.edits = new TagEdits();
    this.expanded = new Set([0]);
    this.showMachinery = false;
    this.selected = null; // {kind: "node"|"scope", id}
    this.report = null;
    this.diverging = new Map();
    this.layoutSeq = 0;
    this.build();
  }

  // ---------- DOM skeleton ----------
  build() {
    this.runSel = h("select#vm-run", { title: "run", onchange: () => this.loadRun(this.runSel.value) });
    this.stepSel = h("select#vm-step", { title: "checkpoint step", onchange: () => this.loadVariables() });
    this.search = h("input.search", { type: "search", placeholder: "Search node or op  ( / )", oninput: () => this.showMatches(), onkeydown: (e) => this.searchKey(e) });
    this.matches = h("div.matches", { hidden: true });
    this.machToggle = h("input", { type: "checkbox", onchange: () => { this.showMachinery = this.machToggle.checked; this.relayout(); } });
    this.saveBtn = h("button.primary#vm-save", { onclick: () => this.save(), disabled: true }, "Save");
    this.exportBtn = h("button.accent#vm-export", { onclick: () => this.startExport() }, "Export");
    this.tabGraph = h("button.tab.on", { onclick: () => this.setTab("graph") }, "Graph");
    this.tabVerify = h("button.tab", { onclick: () => this.setTab("verify") }, "Verification");
    const toolbar = h("div.toolbar", {},
      h("span.brand", {}, "VarMap"),
      h("label.fld", {}, "Run ", this.runSel),
      h("label.fld", {}, "Step ", this.stepSel),
      h("div.searchbox", {}, this.search, this.matches),
      h("label.fld.chk", { title: "show gradients, optimizer, save/restore, summaries, init" }, this.machToggle, "training machinery"),
      h("span.zoom", {},
        h("button", { onclick: () => this.gv.fit(), title: "fit graph" }, "Fit"),
        h("button", { onclick: () => this.gv.zoomBy(1.25), title: "zoom in" }, "+"),
        h("button", { onclick: () => this.gv.zoomBy(0.8), title: "zoom out" }, "−")),
      this.tabGraph, this.tabVerify,
      h("span.grow"),
      this.saveBtn, this.exportBtn);
    this.banner = h("div.banner");
    this.status = h("div.gstatus");
    this.legend = h("div.legend");
    this.graphPane = h("div.graph-pane", {}, this.status, this.legend);
    this.verifyPane = h("div.verify-pane", { hidden: true });
    this.details = h("div.details", {}, h("div.muted", {}, "Click a node to see its details."));
    const varsHost = h("div.vars");
    this.side = h("div.side", {}, this.details, h("h3.vt-title", {}, "Variables"), varsHost);
    this.menu = h("div.ctxmenu", { hidden: true });
    this.dialog = h("div.dialog-wrap", { hidden: true });
    this.root.append(h("div.vm-app", {}, toolbar, this.banner,
      h("div.main", {}, this.graphPane, this.verifyPane, this.side), this.menu, this.dialog));
    this.gv = new GraphView(this.graphPane, {
      onClick: (item) => this.clickItem(item),
      onToggle: (sid) => this.toggleScope(sid),
      onContext: (item, e) => this.contextMenu(item, e),
      onBackground: () => this.select(null),
    });
    this.table = new VarTable(varsHost, { onSelect: (v) => this.selectVariable(v.variable) });
    document.addEventListener("keydown", (e) => this.key(e));
    window.addEventListener("beforeunload", (e) => {
      if (this.edits.count) {
        e.preventDefault();
        e.returnValue = "";
      }
    });
    document.addEventListener("click", (e) => {
      if (!this.menu.contains(e.target)) this.menu.hidden = true;
      if (!e.target.closest(".searchbox")) this.matches.hidden = true;
    });
  }

  key(e) {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName);
    if (e.key === "/" && !typing) {
      e.preventDefault();
      this.search.focus();
      this.search.select();
    } else if (e.key === "Escape") {
      this.menu.hidden = true;
      this.matches.hidden = true;
      if (!this.dialog.hidden) return;
      if (typing) document.activeElement.blur();
      this.select(null);
    }
  }

  setTab(tab) {
    this.tab = tab;
    this.tabGraph.classList.toggle("on", tab === "graph");
    this.tabVerify.classList.toggle("on", tab === "verify");
    this.graphPane.hidden = tab !== "graph";
    this.side.hidden = tab !== "graph";
    this.verifyPane.hidden = tab !== "verify";
    if (tab === "verify") renderVerification(this.verifyPane, this.report, (n) => this.jumpTo(n));
  }

  message(text, kind = "info") {
    clear(this.banner).append(h("div.msg." + kind, {}, h("span", {}, text), h("button.link", { onclick: () => clear(this.banner) }, "dismiss")));
  }

  // ---------- loading ----------
  async start() {
    const want = readHash();
    let runs;
    try {
      runs = (await api.runs()).runs;
    } catch (err) {
      this.message("Could not list runs: " + err.message, "error");
      return;
    }
    this.runs = runs;
    clear(this.runSel).append(...runs.map((r) => h("option", { value: r.run }, r.run + (r.graph_source ? "" : " (no graph)"))));
    if (!runs.length) {
      this.status.textContent = "No runs with a graph or checkpoint in this logdir.";
      return;
    }
    const run = runs.some((r) => r.run === want.run) ? want.run : (runs.find((r) => r.graph_source) || runs[0]).run;
    await this.loadRun(run, want.node);
  }

  async loadRun(run, node) {
    if (this.edits.count && !confirm(`Discard ${this.edits.count} unsaved change(s) to run "${this.run}"?`)) {
      this.runSel.value = this.run;
      return;
    }
    this.run = run;
    this.runSel.value = run;
    delete this.root.dataset.run;
    this.selected = null;
    this.report = null;
    this.diverging = new Map();
    this.ix = null;
    this.vg = this.layout = null;
    this.vars = null;
    this.status.textContent = "Loading graph…";
    clear(this.details).append(h("div.muted", {}, "Click a node to see its details."));
    writeHash({ run });
    try {
      this.edits.reset((await api.tags(run)).tags);
    } catch (err) {
      this.edits.reset(null);
      this.message(`Could not read the tags of run "${run}": ${err.message}`, "error");
    }
    if (run !== this.run) return;
    try {
      const graph = await api.graph(run);
      if (run !== this.run) return;
      this.ix = indexGraph(graph);
      this.expanded = initialExpansion(this.ix, this.showMachinery);
    } catch (err) {
      // A checkpoint-only run still gets its variables table.
      this.vg = this.layout = null;
      this.gv.draw({ boxes: new Map(), edges: new Map(), width: 0, height: 0 }, { items: new Map(), containers: new Map(), edges: new Map() }, () => ({}));
      this.status.textContent = `No graph for run "${run}": ${err.message}`;
      this.root.dataset.layout = "done";
    }
    const info = this.runs.find((r) => r.run === run) || {};
    clear(this.stepSel).append(...(info.checkpoint_steps || []).map((s) => h("option", { value: s }, String(s))));
    if (info.latest_step != null) this.stepSel.value = String(info.latest_step);
    await this.loadVariables();
    this.loadReport();
    if (this.ix) await this.relayout(true);
    if (node && this.ix && this.ix.byName.has(node)) await this.jumpTo(node);
    this.updateSave();
    this.root.dataset.run = run;
  }

  async loadVariables() {
    const run = this.run;
    try {
      const step = this.stepSel.value === "" ? null : this.stepSel.value;
      const res = await api.variables(run, step);
      if (run !== this.run) return;
      this.vars = res;
      if (!this.stepSel.options.length && res.steps) {
        this.stepSel.append(...res.steps.map((s) => h("option", { value: s }, String(s))));
        if (res.step != null) this.stepSel.value = String(res.step);
      }
    } catch (err) {
      this.vars = { variables: [], roles: {}, totals: {} };
      this.message(`Could not load variables of run "${run}": ${err.message}`, "error");
    }
    this.indexVariables();
    this.table.setData(this.vars.variables, this.edits);
    this.redraw();
    this.showDetails();
  }

  indexVariables() {
    this.varByName = new Map(this.vars.variables.map((v) => [v.variable, v]));
    this.varsOfConsumer = new Map();
    for (const v of this.vars.variables) {
      for (const c of v.consumers || []) {
        if (!this.varsOfConsumer.has(c)) this.varsOfConsumer.set(c, []);
        this.varsOfConsumer.get(c).push(v);
      }
    }
  }

  async loadReport() {
    const run = this.run;
    try {
      const rep = await api.report(run);
      if (run !== this.run) return;
      this.setReport(rep);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) this.message("Could not load the report: " + err.message, "error");
    }
  }

  setReport(rep) {
    this.report = rep;
    this.diverging = divergingNodes(rep);
    this.redraw();
    if (this.tab === "verify") this.setTab("verify");
  }

  // ---------- graph ----------
  async relayout(fit = false) {
    if (!this.ix) return;
    const seq = ++this.layoutSeq;
    this.root.dataset.layout = "busy";
    const vg = visibleGraph(this.ix, this.expanded, this.showMachinery);
    this.status.textContent = `Laying out ${vg.items.size} boxes…`;
    this.status.hidden = false;
    let layout;
    try {
      layout = await layoutGraph(vg, (item) => itemSize(item, this.label(item)));
    } catch (err) {
      if (seq === this.layoutSeq) {
        this.status.textContent = "Layout failed: " + err.message;
        this.root.dataset.layout = "failed";
      }
      return;
    }
    if (seq !== this.layoutSeq) return;
    this.vg = vg;
    this.layout = layout;
    this.status.hidden = true;
    this.redraw();
    if (fit) this.gv.fit(true);
    this.drawLegend();
    this.root.dataset.layout = "done"; // browser tests wait for this
  }

  redraw() {
    if (!this.vg || !this.layout) return;
    this.scopeFlags();
    this.gv.draw(this.layout, this.vg, (item) => this.deco(item), this.selectedKey());
  }

  selectedKey() {
    if (!this.selected || !this.vg) return null;
    if (this.selected.kind === "scope") return "s" + this.selected.id;
    return this.vg.rep.get(this.selected.id) || null;
  }

  currentRole(name) {
    const v = this.varByName && this.varByName.get(name);
    return v ? this.edits.roleOf(v) : null;
  }

  // Per scope: unresolved variables and diverging nodes inside (for collapsed boxes).
  scopeFlags() {
    this.flags = new Map();
    const mark = (sid, k) => {
      for (const s of scopePath(this.ix, sid)) {
        const f = this.flags.get(s) || { unres: 0, diverge: null, edited: 0 };
        if (k === "unres") f.unres++;
        else if (k === "edited") f.edited++;
        else if (f.diverge !== "FAILED") f.diverge = k;
        this.flags.set(s, f);
      }
    };
    for (const v of this.vars ? this.vars.variables : []) {
      const n = this.ix.byName.get(v.node);
      if (!n) continue;
      if (v.kind === "weight" && !this.edits.roleOf(v)) mark(n.scope, "unres");
      if (this.edits.isEdited(v.variable)) mark(n.scope, "edited");
    }
    for (const [name, st] of this.diverging) {
      const n = this.ix.byName.get(name);
      if (n) mark(n.scope, st);
    }
  }

  label(item) {
    if (item.kind === "scope" || item.kind === "container") {
      const sc = this.ix.scopes.get(item.id);
      return { title: short(sc.name), sub: item.kind === "scope" ? `${sc.node_count} node${sc.node_count === 1 ? "" : "s"}` : "" };
    }
    const n = this.ix.byId.get(item.id);
    if (n.variable != null) return { title: short(n.variable === "" ? n.name : n.variable), sub: this.currentRole(n.variable) || "unresolved ?" };
    return { title: n.op, sub: short(n.name) };
  }

  deco(item) {
    const lab = this.label(item);
    if (item.kind === "container" || item.kind === "scope") {
      const sc = this.ix.scopes.get(item.id);
      const f = this.flags.get(item.id) || {};
      const collapsed = item.kind === "scope";
      const cls = [sc.machinery ? "mach" : "", collapsed && f.diverge ? "div-" + f.diverge : ""].join(" ");
      return {
        ...lab, cls, name: sc.name,
        fill: collapsed ? "#eceff1" : null,
        stroke: collapsed && f.diverge ? STATUS_COLOR[f.diverge] : collapsed && f.unres ? "#e53935" : null,
        badge: collapsed && f.unres ? `${f.unres} ?` : collapsed && f.edited ? "•" : "",
        tip: `${sc.name || "(root)"} — ${sc.node_count} nodes${f.unres ? `, ${f.unres} unresolved variables` : ""}\n${collapsed ? "click to expand" : "click the title to collapse"}`,
      };
    }
    const n = this.ix.byId.get(item.id);
    const ins = this.edits.currentInputs(this.ix.raw.inputs);
    const outs = this.edits.currentOutputs(this.ix.raw.outputs);
    const io = ins.includes(n.name) ? "IN" : outs.some((o) => o.split(":")[0] === n.name) ? "OUT" : "";
    const st = this.diverging.get(n.name);
    const cls = [n.machinery ? "mach" : "", n.forward ? "" : "nonfwd", st ? "div-" + st : "", io ? "io" : ""].join(" ");
    if (n.variable != null) {
      const role = this.currentRole(n.variable);
      const v = this.varByName && this.varByName.get(n.variable);
      const edited = this.edits.isEdited(n.variable);
      return {
        ...lab, variable: true, name: n.name,
        cls: cls + " var" + (role ? "" : " unres") + (edited ? " edited" : ""),
        fill: roleColor(role), stroke: st ? STATUS_COLOR[st] : role ? "#37474f" : "#b71c1c",
        badge: edited ? "• edited" : io,
        tip: `${n.variable} (${n.op})\nrole: ${role || "unresolved"}${v && v.shape ? `\nshape [${v.shape.join(", ")}]` : ""}`,
      };
    }
    return {
      ...lab, cls: cls + (n.op === "Placeholder" ? " ph" : ""), name: n.name,
      fill: n.op === "Placeholder" ? "#fff3e0" : "#ffffff", stroke: st ? STATUS_COLOR[st] : null,
      badge: io, tip: `${n.name}\nop ${n.op}${item.count > 1 ? `\n+${item.count - 1} folded nodes` : ""}`,
    };
  }

  drawLegend() {
    const roles = new Set();
    for (const v of this.vars ? this.vars.variables : []) if (v.kind === "weight") roles.add((this.edits.roleOf(v) || "").split(".")[0]);
    clear(this.legend).append(...[...roles].sort().map((r) =>
      h("span.lg", {}, h("span.rolechip", { style: { background: roleColor(r || null) } }), r || "unresolved")));
  }

  // A collapsed scope box opens on click (and shows its details); a node is selected.
  async clickItem(item) {
    if (item.kind !== "scope") return this.select({ kind: "node", id: item.id });
    if (!this.expanded.has(item.id)) {
      this.expanded.add(item.id);
      this.selected = { kind: "scope", id: item.id };
      await this.relayout();
      this.gv.fitBox("s" + item.id);
    }
    this.select({ kind: "scope", id: item.id });
  }

  toggleScope(sid) {
    if (this.expanded.has(sid)) {
      for (const s of [...this.expanded]) if (scopePath(this.ix, s).includes(sid)) this.expanded.delete(s);
    } else this.expanded.add(sid);
    this.relayout();
  }

  // ---------- selection ----------
  select(sel, { center = false } = {}) {
    this.selected = sel;
    this.looseVar = null;
    const key = this.selectedKey();
    this.gv.select(key);
    if (center && key) {
      this.gv.centerOn(key);
      this.gv.flash(key);
    }
    const n = sel && sel.kind === "node" ? this.ix.byId.get(sel.id) : null;
    this.table.select(n && n.variable != null ? n.variable : null);
    writeHash({ run: this.run, node: n ? n.name : sel ? this.ix.scopes.get(sel.id).name : null });
    this.showDetails();
  }

  async jumpTo(name) {
    const n = this.ix && this.ix.byName.get(name);
    if (!n) {
      const sc = this.ix && [...this.ix.scopes.values()].find((s) => s.name === name);
      if (!sc) return this.message(`Node "${name}" is not in the graph of run "${this.run}".`, "error");
      for (const s of scopePath(this.ix, sc.parent)) this.expanded.add(s);
      await this.relayout();
      return this.select({ kind: "scope", id: sc.id }, { center: true });
    }
    if (this.tab === "verify") this.setTab("graph");
    let changed = false;
    if (isHidden(this.ix, n, this.showMachinery)) {
      this.showMachinery = this.machToggle.checked = true;
      changed = true;
    }
    const before = this.expanded.size;
    revealNode(this.ix, n.id, this.expanded);
    if (changed || this.expanded.size !== before || !this.vg) await this.relayout();
    this.select({ kind: "node", id: n.id }, { center: true });
  }

  selectVariable(name) {
    const v = this.varByName.get(name);
    if (v && v.in_graph && this.ix && this.ix.byName.has(v.node)) return this.jumpTo(v.node);
    this.selected = null;
    this.looseVar = v;
    this.gv.select(null);
    this.table.select(name);
    this.showDetails();
  }

  // ---------- search ----------
  showMatches() {
    const list = this.ix ? searchNodes(this.ix, this.search.value) : [];
    this.matchList = list;
    this.matchIndex = 0;
    clear(this.matches).append(...list.map((n, i) =>
      h("div.match" + (i === 0 ? ".first" : ""), { onclick: () => this.pickMatch(n) }, h("span.mono", {}, n.name), h("span.op", {}, n.op))));
    if (this.search.value && !list.length) this.matches.append(h("div.match.muted", {}, "no node matches"));
    this.matches.hidden = !this.search.value;
  }

  searchKey(e) {
    const list = this.matchList || [];
    if (!list.length) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      this.matchIndex = (this.matchIndex + (e.key === "ArrowDown" ? 1 : list.length - 1)) % list.length;
      this.matches.querySelectorAll(".match").forEach((el, i) => {
        el.classList.toggle("first", i === this.matchIndex);
        if (i === this.matchIndex) el.scrollIntoView({ block: "nearest" });
      });
    } else if (e.key === "Enter") this.pickMatch(list[this.matchIndex] || list[0]);
  }

  pickMatch(n) {
    this.matches.hidden = true;
    this.jumpTo(n.name);
  }

  // ---------- details ----------
  showDetails(looseVar = this.looseVar) {
    const d = clear(this.details);
    if (looseVar) return d.append(h("h3", {}, "Variable (not in the graph)"), this.variableBlock(looseVar));
    if (!this.ix || !this.selected) {
      d.append(h("div.muted", {}, "Click a node to see its details; right-click for inputs/outputs. Press / to search."));
      return;
    }
    if (this.selected.kind === "scope") return this.scopeDetails(d, this.ix.scopes.get(this.selected.id));
    const n = this.ix.byId.get(this.selected.id);
    const link = (id) => {
      const m = this.ix.byId.get(id);
      return m ? h("li", {}, h("a.node", { href: "#", onclick: (e) => { e.preventDefault(); this.jumpTo(m.name); } }, m.name), h("span.op", {}, m.op)) : null;
    };
    const attrs = Object.entries(n.attrs || {});
    const ins = this.edits.currentInputs(this.ix.raw.inputs);
    const outs = this.edits.currentOutputs(this.ix.raw.outputs);
    d.append(
      h("h3", {}, h("span.mono", {}, n.name)),
      h("div.kv", {}, h("b", {}, "op "), h("span.mono", {}, n.op),
        n.machinery ? h("span.tag", {}, "training machinery") : null, n.forward ? h("span.tag.fwd", {}, "forward") : null,
        ins.includes(n.name) ? h("span.tag.io", {}, "model input") : null,
        outs.some((o) => o.split(":")[0] === n.name) ? h("span.tag.io", {}, "model output") : null,
        this.diverging.has(n.name) ? h("span.tag", { style: { background: STATUS_COLOR[this.diverging.get(n.name)], color: "#fff" } }, this.diverging.get(n.name)) : null),
      attrs.length ? h("table.attrs", {}, attrs.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td.mono", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))) : null,
      h("div.io-actions", {},
        h("button.small", { onclick: () => this.setIO("inputs", n) }, ins.includes(n.name) ? "Remove from inputs" : "Use as model input"),
        h("button.small", { onclick: () => this.setIO("outputs", n) }, outs.some((o) => o.split(":")[0] === n.name) ? "Remove from outputs" : "Use as model output")));
    if (n.variable != null) {
      const v = this.varByName && this.varByName.get(n.variable);
      if (v) d.append(this.variableBlock(v));
      else d.append(h("div.muted", {}, `Variable "${n.variable}" has no entry in the variables list.`));
    }
    const used = this.varsOfConsumer && this.varsOfConsumer.get(n.name);
    if (n.variable == null && used && used.length) {
      d.append(h("h4", {}, "Variables used here"), ...used.map((v) => this.variableBlock(v, true)));
    }
    d.append(h("div.lists", {},
      h("div", {}, h("h4", {}, `Inputs (${n.inputs.length})`), h("ul.nodes", {}, n.inputs.map(link))),
      h("div", {}, h("h4", {}, `Outputs (${(this.ix.consumers.get(n.id) || []).length})`), h("ul.nodes", {}, (this.ix.consumers.get(n.id) || []).map(link)))));
  }

  variableBlock(v, compact = false) {
    const role = this.edits.roleOf(v);
    const edited = this.edits.isEdited(v.variable);
    const roles = Object.keys(this.vars.roles || {}).sort();
    const picker = h("select.role-picker", { "data-variable": v.variable, disabled: v.kind !== "weight" },
      h("option", { value: "" }, role ? "" : "— unresolved —"),
      ...roles.map((r) => {
        const ranks = this.vars.roles[r].ranks;
        const fits = !ranks || !v.shape || ranks.includes(v.shape.length);
        return h("option" + (fits ? "" : ".misfit"), { value: r, title: this.vars.roles[r].description || "" },
          fits ? r : `${r} (needs rank ${ranks.join(" or ")})`);
      }),
      v.source === "tag" ? h("option", { value: "__untag" }, `remove tag (inferred: ${v.inferred_role || "none"})`) : null);
    picker.value = role || "";
    picker.addEventListener("change", () => {
      const val = picker.value;
      if (val === "") return;
      this.edits.setRole(v, val === "__untag" ? null : val);
      this.afterEdit();
    });
    const rows = [
      ["role", h("span", {}, h("span.rolechip", { style: { background: roleColor(role) } }), picker, edited ? h("span.unsaved", {}, " unsaved") : null)],
      ["inferred", `${v.inferred_role || "none"} (confidence ${fmt(v.confidence)})`],
      ["reason", v.reason || "–"],
      ["source", edited ? "edited (unsaved)" : v.source || "inferred"],
      ["shape", v.shape ? `[${v.shape.join(", ")}]` : "unknown"],
      ["dtype", v.dtype],
      ["kind", v.kind],
      ["trainable", String(v.trainable)],
      ["checkpoint", (v.checkpoint_keys || []).join(", ") || "not in checkpoint"],
      ["layer", v.layer || "–"],
    ];
    return h("div.varblock" + (role ? "" : ".unres"), {},
      compact ? h("div.mono.vtitle", {}, h("a.node", { href: "#", onclick: (e) => { e.preventDefault(); this.selectVariable(v.variable); } }, v.variable)) : h("h4", {}, "Variable ", h("span.mono", {}, v.variable)),
      h("table.attrs", {}, (compact ? rows.slice(0, 5) : rows).map(([k, val]) => h("tr", {}, h("td", {}, k), h("td", {}, val)))));
  }

  scopeDetails(d, sc) {
    const vars = this.vars ? variablesUnder(this.vars.variables, sc.name, "*") : [];
    const roles = Object.keys(this.vars ? this.vars.roles : {}).sort();
    const glob = h("input.glob", { value: "*", title: "glob on the variable name under the scope" });
    const roleSel = h("select.bulk-role", {}, roles.map((r) => h("option", { value: r }, r)));
    const onlyUnres = h("input", { type: "checkbox" });
    const count = h("span.muted");
    const matching = () => variablesUnder(this.vars.variables, sc.name, glob.value).filter((v) => !onlyUnres.checked || !this.edits.roleOf(v));
    const recount = () => { count.textContent = `${matching().length} matching`; };
    glob.addEventListener("input", recount);
    onlyUnres.addEventListener("change", recount);
    recount();
    const expanded = this.expanded.has(sc.id);
    d.append(
      h("h3", {}, "Scope ", h("span.mono", {}, sc.name || "(root)")),
      h("div.kv", {}, `${sc.node_count} nodes · ${vars.length} weight variables`, sc.machinery ? h("span.tag", {}, "training machinery") : null),
      sc.id !== 0 ? h("button.small", { onclick: () => this.toggleScope(sc.id) }, expanded ? "Collapse" : "Expand") : null,
      h("h4", {}, "Set a role for every matching variable in this scope"),
      h("div.bulk", {}, glob, roleSel, h("label", {}, onlyUnres, "only unresolved"), count,
        h("button.small.primary", { onclick: () => {
          const m = matching();
          for (const v of m) this.edits.setRole(v, roleSel.value);
          this.afterEdit();
          this.message(`Set ${roleSel.value} on ${m.length} variable(s) under "${sc.name}" (unsaved).`);
        } }, "Apply")),
      vars.length ? h("ul.nodes", {}, vars.slice(0, 50).map((v) =>
        h("li", {}, h("span.rolechip", { style: { background: roleColor(this.edits.roleOf(v)) } }),
          h("a.node", { href: "#", onclick: (e) => { e.preventDefault(); this.selectVariable(v.variable); } }, v.variable),
          h("span.op", {}, this.edits.roleOf(v) || "unresolved")))) : null);
  }

  afterEdit() {
    this.table.render();
    this.redraw();
    this.drawLegend();
    this.showDetails();
    this.updateSave();
  }

  updateSave() {
    const n = this.edits.count;
    this.saveBtn.disabled = !n;
    this.saveBtn.textContent = n ? `Save (${n} unsaved)` : "Saved";
    this.saveBtn.classList.toggle("dirty", !!n);
  }

  // ---------- context menu: model inputs / outputs ----------
  contextMenu(item, e) {
    const entries = [];
    if (item.kind === "node") {
      const n = this.ix.byId.get(item.id);
      const ins = this.edits.currentInputs(this.ix.raw.inputs);
      const outs = this.edits.currentOutputs(this.ix.raw.outputs);
      entries.push([ins.includes(n.name) ? "Remove from model inputs" : "Use as model input", () => this.setIO("inputs", n)]);
      entries.push([outs.some((o) => o.split(":")[0] === n.name) ? "Remove from model outputs" : "Use as model output", () => this.setIO("outputs", n)]);
      entries.push(["Details", () => this.select({ kind: "node", id: n.id })]);
    } else {
      entries.push([this.expanded.has(item.id) ? "Collapse scope" : "Expand scope", () => this.toggleScope(item.id)]);
      entries.push(["Set roles in scope…", () => this.select({ kind: "scope", id: item.id })]);
    }
    clear(this.menu).append(...entries.map(([label, fn]) => h("div.mi", { onclick: () => { this.menu.hidden = true; fn(); } }, label)));
    const r = this.root.getBoundingClientRect();
    Object.assign(this.menu.style, { left: e.clientX - r.left + "px", top: e.clientY - r.top + "px" });
    this.menu.hidden = false;
  }

  setIO(which, n) {
    const fallback = which === "inputs" ? this.ix.raw.inputs : this.ix.raw.outputs;
    const cur = which === "inputs" ? this.edits.currentInputs(fallback) : this.edits.currentOutputs(fallback);
    const val = which === "inputs" ? n.name : n.name + ":0";
    const has = cur.some((x) => x.split(":")[0] === n.name);
    const next = has ? cur.filter((x) => x.split(":")[0] !== n.name) : [...cur, val];
    this.edits[which] = next;
    this.afterEdit();
  }

  // ---------- saving tags ----------
  async save() {
    const run = this.run;
    this.saveBtn.disabled = true;
    try {
      const ioChanged = !!(this.edits.inputs || this.edits.outputs);
      const res = await api.putTags(run, this.edits.body());
      this.edits.reset(res.tags);
      this.message(`Saved tags of run "${run}" (revision ${res.tags.revision}).`, "ok");
      await this.loadVariables();
      if (ioChanged && run === this.run) {
        // New inputs/outputs change which nodes are forward: redraw from the server's view.
        this.ix = indexGraph(await api.graph(run));
        await this.relayout();
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) this.conflict(err.body.current || {});
      else if (err instanceof ApiError && err.status === 400) {
        this.message("Not saved: " + err.message + ((err.body.problems || []).length ? " — " + err.body.problems.join("; ") : ""), "error");
      } else this.message("Not saved: " + err.message, "error");
    }
    this.updateSave();
  }

  conflict(current) {
    const rows = this.edits.diff(current);
    const close = () => { this.dialog.hidden = true; clear(this.dialog); };
    clear(this.dialog).append(h("div.dialog.conflict", { role: "dialog" },
      h("h3", {}, "The tags changed since you loaded them"),
      h("p", {}, `Someone saved revision ${current.revision} of run "${this.run}" while you edited revision ${this.edits.revision}. Nothing was overwritten.`),
      h("table.diff", {}, h("thead", {}, h("tr", {}, h("th", {}, "what"), h("th", {}, "stored"), h("th", {}, "yours"))),
        h("tbody", {}, rows.map((r) => h("tr" + (r.stored === r.mine ? "" : ".differs"), {}, h("td.mono", {}, r.what), h("td", {}, r.stored), h("td", {}, r.mine))))),
      h("div.actions", {},
        h("button#vm-reload", { onclick: async () => { close(); this.edits.reset(current); await this.loadVariables(); this.message("Reloaded the stored tags; your edits were dropped."); this.updateSave(); } }, "Reload stored (drop mine)"),
        h("button.primary#vm-merge", { onclick: () => { close(); this.edits.rebase(current); this.afterEdit(); this.message(`Your ${this.edits.count} edit(s) now apply on top of revision ${current.revision}; press Save to store them.`); } }, "Keep mine on top of stored"),
        h("button", { onclick: close }, "Cancel"))));
    this.dialog.hidden = false;
  }

  // ---------- export ----------
  async startExport() {
    const run = this.run;
    const step = this.stepSel.value === "" ? undefined : Number(this.stepSel.value);
    let job;
    try {
      job = (await api.exportRun(run, step == null ? {} : { step })).job;
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.body.job) job = err.body.job;
      else return this.message(`Export of run "${run}" failed to start: ${err.message}`, "error");
    }
    this.exportBtn.disabled = true;
    const bar = h("div.bar-fill");
    const stage = h("span.stage", {}, "queued");
    clear(this.banner).append(h("div.progress#vm-progress", {}, h("span", {}, `Exporting run "${run}" `), h("div.bar", {}, bar), stage,
      this.edits.count ? h("span.warn", {}, `(uses the saved tags: your ${this.edits.count} unsaved edit(s) are not included)`) : null));
    try {
      for (;;) {
        const j = await api.job(job);
        bar.style.width = Math.round((j.progress || 0) * 100) + "%";
        stage.textContent = `${j.stage || j.state}${j.message ? " — " + j.message : ""}`;
        if (j.state === "done") return this.exportDone(j);
        if (j.state === "failed") return this.message(`Export of run "${run}" failed: ${j.error || j.message}`, "error");
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (err) {
      this.message("Lost track of the export job: " + err.message, "error");
    } finally {
      this.exportBtn.disabled = false;
    }
  }

  exportDone(job) {
    const res = job.result || {};
    const rep = res.report || {};
    const sw = rep.standard_weights || {}, cw = rep.custom_weights || {};
    const uns = rep.unsupported || { by_op: {}, nodes: [] };
    const layers = rep.layers || [];
    const std = layers.filter((l) => l.standard).length;
    const ver = res.verification;
    clear(this.banner).append(h("div.result#vm-result", {},
      h("div", {}, h("b", {}, "Exported "), h("span.mono", {}, res.model_path || "?"),
        ver ? [" · verification ", h("span.status", { style: { background: STATUS_COLOR[passed(ver) ? "OK" : "FAILED"] } }, passed(ver) ? "passed" : "failed"),
          " ", h("button.link", { onclick: () => this.setTab("verify") }, "show")] : ""),
      h("div.muted", {}, `${layers.length} layers: ${std} standard, ${layers.length - std} custom · standard weights ${fmtInt(sw.count)} (${fmtInt(sw.params)} params) · custom weights ${fmtInt(cw.count)} (${fmtInt(cw.params)} params)`),
      (uns.nodes || []).length ? h("div.unsupported", {}, "Unsupported ops: ",
        Object.entries(uns.by_op || {}).map(([op, c]) => `${op} ×${c}`).join(", "), " — ",
        uns.nodes.map((u) => h("a.node", { href: "#", title: u.reason, onclick: (e) => { e.preventDefault(); this.jumpTo(u.node); } }, u.node))) : null,
      h("button.link", { onclick: () => clear(this.banner) }, "dismiss")));
    if (ver) this.setReport({ run: this.run, conversion: rep, verification: ver, attempt: (this.report && this.report.attempt) || null });
    this.loadReport();
  }
}
