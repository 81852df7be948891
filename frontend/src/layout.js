// Layered layout with ELK, run in ELK's own web worker (served from static/).
import ELK from "elkjs/lib/elk-api.js";

let elk = null;
let failed = null; // rejects pending layouts when the worker cannot load or crashes
const waiting = new Set();

function engine() {
  if (elk) return elk;
  const url = new URL("static/elk-worker.js", document.baseURI).href;
  elk = new ELK({
    workerUrl: url,
    workerFactory: (u) => {
      const w = new Worker(u);
      w.addEventListener("error", (e) => {
        failed = new Error(`layout worker ${url} failed: ${e.message || "could not load"}`);
        for (const reject of waiting) reject(failed);
        waiting.clear();
        elk = null;
      });
      return w;
    },
  });
  return elk;
}

function guarded(promise) {
  return new Promise((resolve, reject) => {
    waiting.add(reject);
    promise.then(resolve, reject).finally(() => waiting.delete(reject));
  });
}

const OPTIONS = {
  "elk.algorithm": "layered",
  "elk.direction": "DOWN",
  "elk.hierarchyHandling": "INCLUDE_CHILDREN",
  "elk.edgeRouting": "ORTHOGONAL",
  "elk.layered.spacing.nodeNodeBetweenLayers": "28",
  "elk.spacing.nodeNode": "18",
  "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
  "elk.padding": "[top=30,left=12,bottom=12,right=12]",
  "elk.json.edgeCoords": "ROOT",
  "elk.json.shapeCoords": "ROOT",
};

// vg: visibleGraph(); size(item) -> {width, height}. Resolves to
// {boxes: Map(key -> {x,y,width,height}), edges: Map(key -> [points]), width, height}.
export async function layoutGraph(vg, size) {
  const elkNodes = new Map();
  const root = { id: "root", layoutOptions: OPTIONS, children: [], edges: [] };
  const containerNode = (key) => {
    if (key == null) return root;
    if (!elkNodes.has(key)) {
      const sid = Number(key.slice(1));
      const n = { id: key, children: [], layoutOptions: { "elk.padding": "[top=30,left=12,bottom=12,right=12]" } };
      elkNodes.set(key, n);
      containerNode(vg.containers.get(sid)).children.push(n);
    }
    return elkNodes.get(key);
  };
  for (const item of vg.items.values()) {
    const n = { id: item.key, ...size(item) };
    elkNodes.set(item.key, n);
    containerNode(item.parent).children.push(n);
  }
  for (const e of vg.edges.values()) root.edges.push({ id: e.key, sources: [e.from], targets: [e.to] });

  failed = null;
  const out = await guarded(engine().layout(root));
  const boxes = new Map();
  const edges = new Map();
  const walk = (n) => {
    for (const c of n.children || []) {
      boxes.set(c.id, { x: c.x, y: c.y, width: c.width, height: c.height });
      walk(c);
    }
    for (const e of n.edges || []) {
      const pts = [];
      for (const sec of e.sections || []) {
        pts.push(sec.startPoint, ...(sec.bendPoints || []), sec.endPoint);
      }
      edges.set(e.id, pts);
    }
  };
  walk(out);
  return { boxes, edges, width: out.width, height: out.height };
}
