// Layered layout with ELK, run in ELK's own web worker (served from static/).
import ELK from "elkjs/lib/elk-api.js";

let elk = null;
function engine() {
  if (!elk) elk = new ELK({ workerUrl: new URL("static/elk-worker.js", document.baseURI).href });
  return elk;
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

  const out = await engine().layout(root);
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
