"""Panel at scale: opening the VarMap tab until its graph is interactive, in headless Chromium.

For each size a synthetic graph run (bench/synth_graph.py) is served by a fresh
`tensorboard`. TensorBoard's page is loaded on a tab that does not exist (its shell only),
then `location.hash` switches to the tab under test and the clock runs until:
  varmap: `#varmap-root[data-run]` is set inside the plugin iframe (set by the panel once
          the graph and variables are loaded and the ELK layout is drawn: app.js loadRun);
  graphs: TensorBoard's Graphs dashboard has drawn nodes (`tf-graph-scene g.node`) and
          its progress bar is gone.
The first opening (server cold) is reported apart from the median of the later ones
(each in a fresh browser page). JS heap is CDP `Runtime.getHeapUsage` of the page's
renderer after the graph is drawn (TensorBoard's shell included; the shell alone is
reported as `shell_heap_mib`).

  python -m bench.panel                     # 1k, 10k, 100k nodes
  python -m bench.panel --smoke --out /tmp/x
"""
import argparse
import os
import shutil
import tempfile
import time

from bench import common, synth_graph
from bench.tbserver import tensorboard

RUN = "train"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGETS = {"10000": 1.0, "100000": 3.0, "heap_mib_100000": 150}


_TIMELINE = """() => ({origin: performance.timeOrigin, now: performance.now(),
  res: performance.getEntriesByType('resource').map(e => [e.name.replace(location.origin, ''),
        e.startTime, e.responseEnd, e.transferSize, e.decodedBodySize])})"""


def _timeline(context, switched_at):
    """Fetches of a frame as [url, start, end, bytes on the wire, decoded] in seconds after the switch."""
    t = context.evaluate(_TIMELINE)
    rows = []
    for url, start, end, wire, decoded in t["res"]:
        begin = (t["origin"] + start) / 1000 - switched_at
        if begin >= -0.05:
            rows.append([url[:120], round(begin, 3), round((t["origin"] + end) / 1000 - switched_at, 3), wire, decoded])
    return rows, round((t["origin"] + t["now"]) / 1000 - switched_at, 3)


def _varmap_ready(page, run, timeout_ms):
    frame_el = page.wait_for_selector("iframe", timeout=timeout_ms, state="attached")
    frame = frame_el.content_frame()
    frame.wait_for_selector('#varmap-root[data-run="%s"]' % run, timeout=timeout_ms, state="attached")
    page._bench_frame = frame
    return frame.evaluate("() => document.querySelectorAll('#varmap-root svg .gitem').length")


def _graphs_ready(page, run, timeout_ms):
    # Playwright's CSS engine pierces the dashboard's open shadow roots.
    page.wait_for_selector("tf-graph-scene g.node", timeout=timeout_ms, state="attached")
    return page.locator("tf-graph-scene g.node").count()


def open_tab(browser, base, tab, timeout_s):
    """Seconds from switching to `tab` until it is interactive; heap after, in MiB."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(base + "/#bench-no-such-tab", wait_until="networkidle", timeout=timeout_s * 1000)
        cdp = context.new_cdp_session(page)
        cdp.send("HeapProfiler.collectGarbage")
        shell = cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20
        start = time.perf_counter()
        switched_at = None
        switched_at = page.evaluate("tab => { location.hash = tab; return (performance.timeOrigin + performance.now()) / 1000; }",
                                    "#" + tab)
        ready = _varmap_ready if tab == "varmap" else _graphs_ready
        items = ready(page, RUN, timeout_s * 1000)
        seconds = time.perf_counter() - start
        fetches, ready_at = _timeline(getattr(page, "_bench_frame", None) or page, switched_at)
        if tab == "varmap":  # when the plugin iframe itself started loading
            fetches = _timeline(page, switched_at)[0] + fetches
        heap = cdp.send("Runtime.getHeapUsage")
        cdp.send("HeapProfiler.collectGarbage")
        heap_gc = cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20
        return {"seconds": seconds, "heap_mib": heap["usedSize"] / 2**20, "heap_after_gc_mib": heap_gc,
                "shell_heap_mib": shell, "drawn_items": items, "ready_at_s": ready_at, "fetches": fetches}
    except Exception as e:  # record the failure with what the page shows
        row = {"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:300])}
        try:
            frame = page.frames[-1]
            row["page_state"] = frame.evaluate(
                "() => { const r = document.querySelector('#varmap-root'); const s = r && r.querySelector('.gstatus');"
                " return r ? {dataset: {...r.dataset}, status: s && s.textContent} : null; }")
            row["fetches"], row["gave_up_at_s"] = _timeline(frame, switched_at)
        except Exception:  # noqa: BLE001  the page may be gone
            pass
        return row
    finally:
        context.close()


def measure(base, opens, timeout_s):
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for tab in ("varmap", "graphs"):
                rows = []
                for _ in range(opens):
                    rows.append(open_tab(browser, base, tab, timeout_s))
                    print("    %s: %s" % (tab, {k: v for k, v in rows[-1].items() if k != "fetches"}), flush=True)
                ok = [r for r in rows if "error" not in r]
                out[tab] = {
                    "first_s": rows[0].get("seconds"),
                    "median_s": common.median([r["seconds"] for r in ok[1:]] or [r["seconds"] for r in ok]),
                    "heap_mib": common.median([r["heap_mib"] for r in ok]),
                    "heap_after_gc_mib": common.median([r["heap_after_gc_mib"] for r in ok]),
                    "shell_heap_mib": common.median([r["shell_heap_mib"] for r in ok]),
                    "drawn_items": ok[0]["drawn_items"] if ok else None,
                    "errors": [r["error"] for r in rows if "error" in r],
                    "opens": rows,
                }
        finally:
            browser.close()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--opens", type=int, default=4, help="tab openings per size (first = server cold)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds per opening")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    sizes = [300] if args.smoke else [int(s) for s in args.sizes.split(",")]
    opens = 1 if args.smoke else args.opens
    work = tempfile.mkdtemp(prefix="bench_panel_")
    results = []
    try:
        for size in sizes:
            logdir = os.path.join(work, "n%d" % size)
            graph = synth_graph.synth_graph(size)
            synth_graph.write_graph_run(os.path.join(logdir, RUN), graph)
            with tensorboard(logdir, log_dir=work) as tb:
                tb.wait_for(lambda t: t.json("/data/plugin/graphs/info").get(RUN, {}).get("run_graph"),
                            "graph of run %r" % RUN)
                row = {"target_nodes": size, "nodes": len(graph.node), **measure(tb.base, opens, args.timeout)}
            results.append(row)
            print("%7d nodes  varmap first %s median %s heap %s  |  graphs first %s median %s heap %s  %s" % (
                row["nodes"], _f(row["varmap"]["first_s"]), _f(row["varmap"]["median_s"]),
                _f(row["varmap"]["heap_mib"], "MiB"), _f(row["graphs"]["first_s"]),
                _f(row["graphs"]["median_s"]), _f(row["graphs"]["heap_mib"], "MiB"),
                (row["varmap"]["errors"] + row["graphs"]["errors"])[:2]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = common.save(args.out, "panel" + ("_smoke" if args.smoke else ""),
                       {"sizes": results, "opens": opens, "targets": TARGETS})
    print("wrote", path)
    return results


def _f(x, unit="s"):
    return "—" if x is None else ("%.2f %s" % (x, unit))


if __name__ == "__main__":
    main()
