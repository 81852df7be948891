// SVG drawing of a laid-out graph, with pan, zoom, fit and selection.
import { s, clear } from "./dom.js";

const CHAR = 6.6;

export function itemSize(item, label) {
  const text = Math.max(label.title.length, label.sub.length);
  return { width: Math.min(240, Math.max(70, text * CHAR + 22)), height: item.kind === "scope" ? 40 : 34 };
}

export class GraphView {
  constructor(host, cb) {
    this.cb = cb;
    this.view = { x: 0, y: 0, k: 1 };
    this.svg = s("svg", { class: "graph-svg", tabindex: "0" });
    this.svg.append(
      s("defs", {},
        s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "8", markerHeight: "8", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#90a4ae" })))
    );
    this.root = s("g", {});
    this.svg.append(this.root);
    host.append(this.svg);
    this.items = new Map(); // key -> <g>
    this.layout = null;
    this._panZoom();
  }

  _panZoom() {
    let drag = null;
    this.svg.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || e.target.closest(".gitem")) return;
      drag = { x: e.clientX, y: e.clientY, vx: this.view.x, vy: this.view.y, moved: false };
      this.svg.setPointerCapture(e.pointerId);
    });
    this.svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
      this.view.x = drag.vx + dx;
      this.view.y = drag.vy + dy;
      this._apply();
    });
    this.svg.addEventListener("pointerup", (e) => {
      if (drag && !drag.moved && !e.target.closest(".gitem")) this.cb.onBackground();
      drag = null;
    });
    this.svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.svg.getBoundingClientRect();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
  }

  zoomAt(f, px, py) {
    const k = Math.min(4, Math.max(0.05, this.view.k * f));
    f = k / this.view.k;
    this.view.x = px - (px - this.view.x) * f;
    this.view.y = py - (py - this.view.y) * f;
    this.view.k = k;
    this._apply();
  }

  zoomBy(f) {
    const r = this.svg.getBoundingClientRect();
    this.zoomAt(f, r.width / 2, r.height / 2);
  }

  _apply() {
    const { x, y, k } = this.view;
    this.root.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  // Whole graph in view; with readable=true a tall graph keeps a legible zoom, top first.
  fit(readable = false) {
    if (!this.layout) return;
    const r = this.svg.getBoundingClientRect();
    const w = Math.max(this.layout.width, 1), hgt = Math.max(this.layout.height, 1);
    let k = Math.min(1.5, (r.width - 40) / w, (r.height - 40) / hgt);
    if (readable && k < 0.7) {
      k = Math.min(0.7, (r.width - 40) / w);
      this.view = { k, x: (r.width - w * k) / 2, y: 20 };
    } else this.view = { k, x: (r.width - w * k) / 2, y: Math.max(20, (r.height - hgt * k) / 2) };
    this._apply();
  }

  // Zoom so that one box (an opened scope) fills the view; a huge box keeps a legible
  // zoom and shows its top-left corner first.
  fitBox(key) {
    const b = this.layout && this.layout.boxes.get(key);
    if (!b) return;
    const r = this.svg.getBoundingClientRect();
    const k = Math.min(1, (r.width - 40) / b.width, (r.height - 40) / b.height);
    if (k >= 0.5) this.view = { k, x: r.width / 2 - (b.x + b.width / 2) * k, y: r.height / 2 - (b.y + b.height / 2) * k };
    else this.view = { k: 0.5, x: 20 - b.x * 0.5, y: 30 - b.y * 0.5 };
    this._apply();
  }

  centerOn(key) {
    const b = this.layout && this.layout.boxes.get(key);
    if (!b) return;
    const r = this.svg.getBoundingClientRect();
    const k = Math.max(this.view.k, 0.8);
    this.view = { k, x: r.width / 2 - (b.x + b.width / 2) * k, y: r.height / 2 - (b.y + b.height / 2) * k };
    this._apply();
  }

  // layout: from layoutGraph; vg: visibleGraph; deco(item) -> {title, sub, cls, fill, stroke, badge, tip}
  draw(layout, vg, deco, selectedKey) {
    this.layout = layout;
    clear(this.root);
    this.items.clear();
    const gScopes = s("g", {}), gEdges = s("g", {}), gNodes = s("g", {});
    this.root.append(gScopes, gEdges, gNodes);
    for (const [sid] of vg.containers) {
      const key = "s" + sid;
      const b = layout.boxes.get(key);
      if (!b) continue;
      const d = deco({ key, kind: "container", id: sid });
      const title = s("text", { x: b.x + 8, y: b.y + 17, class: "ctitle" }, "− " + d.title);
      const g = s("g", { class: "gitem container " + (d.cls || ""), "data-key": key, "data-name": d.name || "" },
        s("rect", { x: b.x, y: b.y, width: b.width, height: b.height, rx: 6 }),
        title,
        s("title", {}, d.tip || d.title));
      // The title collapses the scope; the frame selects it (scope details, bulk tagging).
      title.addEventListener("click", (e) => { e.stopPropagation(); this.cb.onToggle(sid); });
      g.addEventListener("click", (e) => { e.stopPropagation(); this.cb.onClick({ key, kind: "scope", id: sid }, e); });
      g.addEventListener("contextmenu", (e) => { e.preventDefault(); this.cb.onContext({ key, kind: "container", id: sid }, e); });
      gScopes.append(g);
      this.items.set(key, g);
    }
    for (const e of vg.edges.values()) {
      const pts = layout.edges.get(e.key);
      if (!pts || !pts.length) continue;
      const d = "M" + pts.map((p) => `${p.x},${p.y}`).join(" L");
      gEdges.append(s("path", { d, class: "edge", "stroke-width": Math.min(4, 1 + Math.log2(e.count)), "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
      if (e.count > 1) {
        const m = pts[Math.floor(pts.length / 2)];
        gEdges.append(s("text", { x: m.x + 4, y: m.y - 3, class: "ecount" }, "×" + e.count));
      }
    }
    for (const item of vg.items.values()) {
      const b = layout.boxes.get(item.key);
      if (!b) continue;
      const d = deco(item);
      const shape = d.variable
        ? s("rect", { x: b.x, y: b.y, width: b.width, height: b.height, rx: b.height / 2, fill: d.fill, stroke: d.stroke })
        : s("rect", { x: b.x, y: b.y, width: b.width, height: b.height, rx: item.kind === "scope" ? 8 : 3, fill: d.fill, stroke: d.stroke });
      const g = s("g", { class: `gitem ${item.kind} ${d.cls || ""}`, "data-key": item.key, "data-name": d.name || "" },
        item.kind === "scope" ? s("rect", { x: b.x + 4, y: b.y + 4, width: b.width, height: b.height, rx: 8, class: "stack" }) : null,
        shape,
        s("text", { x: b.x + b.width / 2, y: b.y + (d.sub ? 14 : 21), class: "ntitle" }, d.title),
        d.sub ? s("text", { x: b.x + b.width / 2, y: b.y + 27, class: "nsub" }, d.sub) : null,
        d.badge ? s("text", { x: b.x + b.width - 4, y: b.y - 3, class: "badge" }, d.badge) : null,
        s("title", {}, d.tip || d.title));
      g.addEventListener("click", (e) => { e.stopPropagation(); this.cb.onClick(item, e); });
      g.addEventListener("contextmenu", (e) => { e.preventDefault(); e.stopPropagation(); this.cb.onContext(item, e); });
      gNodes.append(g);
      this.items.set(item.key, g);
    }
    this.select(selectedKey);
  }

  select(key) {
    for (const el of this.root.querySelectorAll(".selected")) el.classList.remove("selected");
    for (const el of this.root.querySelectorAll(".edge.near")) el.classList.remove("near");
    const g = key && this.items.get(key);
    if (!g) return;
    g.classList.add("selected");
    for (const el of this.root.querySelectorAll(`.edge[data-from="${key}"], .edge[data-to="${key}"]`)) el.classList.add("near");
  }

  flash(key) {
    const g = this.items.get(key);
    if (!g) return;
    g.classList.remove("flash");
    void g.getBoundingClientRect();
    g.classList.add("flash");
  }
}
