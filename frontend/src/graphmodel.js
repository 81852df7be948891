// Pure graph bookkeeping: scope tree, folding, the visible (collapsed) graph, search.

// Index the /graph response once per run.
export function indexGraph(g) {
  const nodes = g.nodes;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const scopes = new Map(g.scopes.map((sc) => [sc.id, { ...sc, children: [], nodes: [] }]));
  for (const sc of scopes.values()) {
    if (sc.parent != null && scopes.has(sc.parent)) scopes.get(sc.parent).children.push(sc.id);
  }
  for (const n of nodes) {
    if (!scopes.has(n.scope)) n.scope = 0;
    scopes.get(n.scope).nodes.push(n.id);
  }
  // A scope named like a variable node ("dense/kernel" holding read/Assign) folds into it.
  const varScope = new Map();
  for (const sc of scopes.values()) {
    const v = byName.get(sc.name);
    if (v && v.variable != null) varScope.set(sc.id, v.id);
  }
  // Scopes holding any forward (inference) node; others start collapsed.
  for (const n of nodes) {
    if (!n.forward) continue;
    for (let s = n.scope; s != null && scopes.has(s) && !scopes.get(s).forward; s = scopes.get(s).parent) scopes.get(s).forward = true;
  }
  const consumers = new Map();
  for (const n of nodes) {
    for (const i of n.inputs) {
      if (!consumers.has(i)) consumers.set(i, []);
      consumers.get(i).push(n.id);
    }
  }
  return { raw: g, nodes, byId, byName, scopes, varScope, consumers };
}

// Scope ids from the root down to `sid` (inclusive).
export function scopePath(ix, sid) {
  const path = [];
  for (let s = sid; s != null && ix.scopes.has(s); s = ix.scopes.get(s).parent) path.push(s);
  return path.reverse();
}

// Which visible item stands for node `n`: itself, a collapsed scope box or its variable.
export function representative(ix, n, expanded) {
  for (const sid of scopePath(ix, n.scope)) {
    if (ix.varScope.has(sid)) return "n" + ix.varScope.get(sid);
    if (sid !== 0 && !expanded.has(sid)) return "s" + sid;
  }
  return "n" + n.id;
}

export function isHidden(ix, n, showMachinery) {
  if (showMachinery) return false;
  if (n.machinery) return true;
  return scopePath(ix, n.scope).some((sid) => ix.scopes.get(sid).machinery);
}

// Scopes to open first: breadth first while the visible item count stays small.
export function initialExpansion(ix, showMachinery, budget = 50) {
  const expanded = new Set([0]);
  let count = visibleGraph(ix, expanded, showMachinery).items.size;
  const queue = [...ix.scopes.get(0).children];
  let tries = 0; // each try is O(nodes): keep big graphs fast
  while (queue.length && tries++ < 60) {
    const sid = queue.shift();
    if (ix.varScope.has(sid) || !ix.scopes.get(sid).forward) continue;
    const trial = new Set(expanded).add(sid);
    const c = visibleGraph(ix, trial, showMachinery).items.size;
    if (c > budget) continue;
    expanded.add(sid);
    count = c;
    queue.push(...ix.scopes.get(sid).children);
  }
  return expanded;
}

// The graph to lay out: items (nodes and collapsed scopes), expanded scope containers, edges.
export function visibleGraph(ix, expanded, showMachinery) {
  const items = new Map(); // key -> {key, kind: "node"|"scope", id, parent, count}
  const containers = new Map(); // scope id -> parent container key (expanded, non-root)
  const rep = new Map(); // node id -> item key
  for (const n of ix.nodes) {
    if (isHidden(ix, n, showMachinery)) continue;
    const key = representative(ix, n, expanded);
    rep.set(n.id, key);
    if (items.has(key)) {
      items.get(key).count++;
      continue;
    }
    const id = Number(key.slice(1));
    const parentScope = key[0] === "s" ? ix.scopes.get(id).parent : ix.byId.get(id).scope;
    const parent = containerOf(ix, parentScope, expanded, containers);
    items.set(key, { key, kind: key[0] === "s" ? "scope" : "node", id, parent, count: 1 });
  }
  const edges = new Map();
  for (const n of ix.nodes) {
    const to = rep.get(n.id);
    if (!to) continue;
    for (const i of n.inputs) {
      const from = rep.get(i);
      if (!from || from === to) continue;
      const k = from + ">" + to;
      const e = edges.get(k);
      if (e) e.count++;
      else edges.set(k, { key: k, from, to, count: 1 });
    }
  }
  return { items, containers, edges, rep };
}

// Nearest expanded, non-root ancestor container key (or null for the root); registers chains.
function containerOf(ix, sid, expanded, containers) {
  const path = scopePath(ix, sid).filter((s) => s !== 0 && !ix.varScope.has(s));
  let parent = null;
  for (const s of path) {
    if (!expanded.has(s)) break;
    if (!containers.has(s)) containers.set(s, parent);
    parent = "s" + s;
  }
  return parent;
}

// Expand every scope on the way to node `id` (so it is drawn on its own or as its variable).
export function revealNode(ix, id, expanded) {
  const n = ix.byId.get(id);
  for (const sid of scopePath(ix, n.scope)) {
    if (ix.varScope.has(sid)) break;
    expanded.add(sid);
  }
}

// Search by node name or op type; exact and prefix matches first.
export function searchNodes(ix, query, limit = 20) {
  const q = query.trim().toLowerCase();
  if (!q) return [];
  const scored = [];
  for (const n of ix.nodes) {
    const name = n.name.toLowerCase();
    const op = n.op.toLowerCase();
    let score = -1;
    if (name === q) score = 0;
    else if (op === q) score = 1;
    else if (name.endsWith("/" + q)) score = 2;
    else if (name.startsWith(q)) score = 3;
    else if (name.includes(q)) score = 4;
    else if (op.includes(q)) score = 5;
    if (score >= 0) scored.push([score, n.name.length, n]);
  }
  scored.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return scored.slice(0, limit).map((x) => x[2]);
}

// Variables (by name) that live under a scope name and match a glob on the rest of the name.
export function variablesUnder(variables, scopeName, glob) {
  const prefix = scopeName ? scopeName + "/" : "";
  const re = new RegExp(
    "^" + (glob || "*").split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$"
  );
  return variables.filter((v) => {
    if (!v.variable.startsWith(prefix) || v.kind !== "weight") return false;
    const rest = v.variable.slice(prefix.length);
    return re.test(rest) || re.test(rest.split("/").pop());
  });
}
