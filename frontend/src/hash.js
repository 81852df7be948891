// The iframe's own location hash keeps run and selected node: #run=…&node=…
export function readHash() {
  const p = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  return { run: p.get("run"), node: p.get("node") };
}

export function writeHash(state) {
  const p = new URLSearchParams();
  if (state.run != null) p.set("run", state.run);
  if (state.node) p.set("node", state.node);
  const hash = "#" + p.toString();
  // A bare "#…" would resolve against <base href="plugin/varmap/"> and move the iframe.
  const { pathname, search } = window.location;
  if (hash !== window.location.hash) history.replaceState(null, "", pathname + search + hash);
}
