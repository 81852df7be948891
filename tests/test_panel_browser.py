"""The VarMap tab in headless Chromium against a real tensorboard process on demo_logs."""
import json
import os
import shutil
import subprocess
import time

import pytest

from browser_util import CHROMIUM, REPO, TensorBoard, copy_demo_logs, launch_chromium, shot

browser_test = pytest.mark.browser
FRONTEND = os.path.join(REPO, "frontend")

RUN = "dense_nobias"  # one MatMul on dense/kernel [10, 5]
BIG_RUN = "cnn_bn_adam"  # conv + BN + Adam, training tower and optimizer


REAL_LSTM = os.path.join(REPO, "..", "shared", "fixtures", "real", "charrnn_lstm_tf012")
BIG_REAL_RUN = "charrnn"  # real TF 0.12 char-RNN: ~9.7k nodes, 50 unrolled steps


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    logs = copy_demo_logs(str(tmp_path_factory.mktemp("panel") / "logs"))
    if os.path.isdir(REAL_LSTM):
        shutil.copytree(REAL_LSTM, os.path.join(logs, BIG_REAL_RUN))
    return logs


@pytest.fixture(scope="module")
def tb(logdir):
    server = TensorBoard(logdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium not installed at %s" % CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    with sync_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    pages = []

    def make():
        ctx = browser.new_context(viewport={"width": 1400, "height": 860})
        page = ctx.new_page()
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        pages.append(ctx)
        return page

    yield make
    for ctx in pages:
        ctx.close()


def open_panel(page, tb, run, node=None):
    """Opens the plugin's iframe document directly and waits for graph + variables."""
    frag = "run=" + run + ("&node=" + node if node else "")
    page.goto(tb.url + "/data/plugin_entry.html?name=varmap#" + frag)
    page.wait_for_selector('#varmap-root[data-run="%s"][data-layout="done"]' % run, timeout=90000, state="attached")
    return page


def tags_file(logdir, run):
    with open(os.path.join(logdir, run, "varmap", "tags.json")) as f:
        return json.load(f)


def other_role(tb, run, variable):
    """A role from the server's vocabulary that fits the variable's rank but is not its role."""
    res = tb.get_json("variables?run=" + run)
    v = next(v for v in res["variables"] if v["variable"] == variable)
    for name, spec in sorted(res["roles"].items()):
        ranks = spec.get("ranks")
        if name not in (v["role"], "ignore", "constant") and (ranks is None or len(v["shape"]) in ranks):
            yield name


@browser_test
def test_tab_appears_in_tensorboard_default_loader(tb, new_page):
    page = new_page()
    page.goto(tb.url + "/#varmap")
    frame_el = page.wait_for_selector("iframe", timeout=90000, state="attached")
    frame = frame_el.content_frame()
    frame.wait_for_selector('#varmap-root[data-layout="done"]', timeout=90000, state="attached")
    assert frame.locator(".gitem").count() > 0
    assert page.get_by_text("VarMap", exact=False).first.is_visible()
    shot(page, "tensorboard_tab")
    assert not page.errors


@browser_test
@pytest.mark.slow  # a second tensorboard with the Python multiplexer: ~30 s
def test_tab_appears_with_load_fast_false(logdir, new_page):
    server = TensorBoard(logdir, load_fast="false")
    try:
        page = new_page()
        page.goto(server.url + "/#varmap")
        frame = page.wait_for_selector("iframe", timeout=90000, state="attached").content_frame()
        frame.wait_for_selector('#varmap-root[data-layout="done"]', timeout=90000, state="attached")
        assert frame.locator(".gitem").count() > 0
        runs = [o.get_attribute("value") for o in frame.locator("#vm-run option").all()]
        assert RUN in runs and BIG_RUN in runs
        assert not any(r.endswith("varmap") for r in runs)
        shot(page, "tensorboard_tab_load_fast_false")
    finally:
        server.stop()


@browser_test
def test_graph_collapses_scopes_and_search_expands_them(tb, new_page):
    page = open_panel(new_page(), tb, BIG_RUN)
    graph = tb.get_json("graph?run=" + BIG_RUN)
    shown = page.locator(".gitem.node").count() + page.locator(".gitem.scope").count()
    assert 0 < shown < graph["node_count"]  # collapsed scopes, machinery hidden
    assert page.locator(".gitem.scope").count() > 0
    shot(page, "graph_overview")

    # A node drawn only as part of a collapsed scope box (not hidden machinery).
    target = page.evaluate("""() => {
        const app = window.varmapApp;
        const n = app.ix.nodes.find((n) => (app.vg.rep.get(n.id) || "").startsWith("s"));
        return n && {name: n.name, op: n.op, box: app.vg.rep.get(n.id)};
    }""")
    assert target, "expected a collapsed scope in %s" % BIG_RUN
    assert page.locator('.gitem[data-name="%s"]' % target["name"]).count() == 0
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.classList.contains('search')")
    page.keyboard.type(target["name"])
    page.wait_for_selector(".matches .match")
    page.keyboard.press("Enter")
    sel = page.wait_for_selector('.gitem.selected[data-name="%s"]' % target["name"], timeout=30000)
    assert sel is not None
    assert "node=" + target["name"].replace("/", "%2F") in page.evaluate("location.hash")
    assert target["op"] in page.locator(".details").inner_text()
    shot(page, "search_result")

    # Esc clears the selection.
    page.locator(".graph-svg").focus()
    page.keyboard.press("Escape")
    assert page.locator(".gitem.selected").count() == 0


@browser_test
def test_big_real_graph_opens_collapsed_and_expands_on_click(tb, logdir, new_page):
    if not os.path.isdir(os.path.join(logdir, BIG_REAL_RUN)):
        pytest.skip("real fixture %s not found" % REAL_LSTM)
    graph = tb.get_json("graph?run=" + BIG_REAL_RUN)
    assert graph["node_count"] > 5000
    page = open_panel(new_page(), tb, BIG_REAL_RUN)
    boxes = page.locator(".gitem").count()
    assert 0 < boxes <= 150  # top scopes only
    shot(page, "big_graph_collapsed")
    scope = page.locator(".gitem.scope").first
    name = scope.get_attribute("data-name")
    scope.click()
    # The page keeps answering while the worker lays the graph out.
    t0 = time.time()
    assert page.evaluate("1 + 1") == 2
    assert time.time() - t0 < 1.0
    page.wait_for_selector('.gitem.container[data-name="%s"]' % name, timeout=60000, state="attached")
    page.wait_for_selector('#varmap-root[data-layout="done"]', state="attached")
    assert page.locator(".gitem").count() > boxes
    assert name in page.locator(".details").inner_text()  # the scope's details and bulk tagging
    shot(page, "big_graph_expanded")


@browser_test
def test_bulk_role_for_a_scope(tb, logdir, new_page):
    run = BIG_RUN
    res = tb.get_json("variables?run=" + run)
    biases = [v["variable"] for v in res["variables"] if v["kind"] == "weight" and v["variable"].endswith("/bias")]
    assert len(biases) >= 2
    role = next(r for r, spec in sorted(res["roles"].items())
                if r not in ("ignore", "constant") and (spec.get("ranks") is None or 1 in spec["ranks"])
                and any(v["role"] != r for v in res["variables"] if v["variable"] in biases))
    scope = biases[0].split("/")[0]
    page = open_panel(new_page(), tb, run)
    page.locator('.gitem.container[data-name="%s"] > rect' % scope).first.click(position={"x": 5, "y": 40})
    page.locator(".details input.glob").fill("bias")
    page.locator(".details select.bulk-role").select_option(role)
    page.locator(".details button", has_text="Apply").click()
    under = [b for b in biases if b.startswith(scope + "/")]
    changed = [v["variable"] for v in res["variables"] if v["variable"] in under and v["role"] != role]
    assert changed and page.locator("table.vt tr.edited").count() == len(changed)
    page.locator("#vm-save").click()
    page.wait_for_selector(".msg.ok", timeout=30000)
    stored = tags_file(logdir, run)["variables"]
    assert all(stored[b]["role"] == role for b in under)


@browser_test
def test_machinery_toggle_shows_training_nodes(tb, new_page):
    page = open_panel(new_page(), tb, BIG_RUN)
    graph = tb.get_json("graph?run=" + BIG_RUN)
    assert any(n["machinery"] for n in graph["nodes"])
    before = page.locator(".gitem").count()
    page.locator(".chk input").check()
    page.wait_for_function("document.querySelector('#varmap-root').dataset.layout === 'done' && document.querySelectorAll('.gitem').length > %d" % before, timeout=30000)
    assert page.locator(".gitem.mach").count() > 0


@browser_test
def test_url_hash_restores_run_and_node(tb, new_page):
    page = open_panel(new_page(), tb, RUN, node="dense/MatMul")
    page.wait_for_selector('.gitem.selected[data-name="dense/MatMul"]')
    assert page.locator("#vm-run").input_value() == RUN
    assert "MatMul" in page.locator(".details").inner_text()
    # switching runs reloads graph + variables and rewrites the iframe's own hash
    page.locator("#vm-run").select_option(BIG_RUN)
    page.wait_for_selector('#varmap-root[data-run="%s"][data-layout="done"]' % BIG_RUN, state="attached", timeout=60000)
    assert page.evaluate("location.hash") == "#run=" + BIG_RUN
    assert page.evaluate("location.pathname") == "/data/plugin_entry.html"
    assert page.locator('table.vt tr[data-variable^="model/"]').count() > 0


@browser_test
def test_table_row_selects_node_and_node_selects_row(tb, new_page):
    page = open_panel(new_page(), tb, BIG_RUN)
    rows = page.locator("table.vt tbody tr[data-variable]")
    assert rows.count() > 0
    name = rows.first.get_attribute("data-variable")
    rows.first.click()
    page.wait_for_selector('.gitem.selected.var[data-name="%s"]' % name, timeout=30000)
    assert name in page.locator(".details").inner_text()
    # sort by role, then filter to unresolved (may be empty, but the filter must apply)
    page.locator("table.vt th", has_text="role").click()
    page.locator(".vt-role").select_option("__unresolved")
    for r in page.locator("table.vt tbody tr[data-variable]").all():
        assert "unresolved" in r.inner_text()
    page.locator(".vt-role").select_option("")
    # clicking a variable node in the graph selects its row
    other = page.locator(".gitem.var").nth(1)
    other_name = other.get_attribute("data-name")
    other.click()
    page.wait_for_selector('table.vt tr.sel[data-variable="%s"]' % other_name)


@browser_test
def test_tag_role_and_save_writes_tags_json(tb, logdir, new_page):
    page = open_panel(new_page(), tb, RUN)
    role = next(other_role(tb, RUN, "dense/kernel"))
    page.locator('.gitem.var[data-name="dense/kernel"]').click()
    page.locator('.details select.role-picker[data-variable="dense/kernel"]').select_option(role)
    assert "1 unsaved" in page.locator("#vm-save").inner_text()
    assert page.locator('table.vt tr.edited[data-variable="dense/kernel"]').count() == 1
    shot(page, "tagging_unsaved")
    page.locator("#vm-save").click()
    page.wait_for_selector(".msg.ok", timeout=30000)
    stored = tags_file(logdir, RUN)
    assert stored["variables"]["dense/kernel"]["role"] == role
    # the server now reports the role as a tag
    page.wait_for_selector('table.vt tr[data-variable="dense/kernel"]:has-text("tag")')
    assert page.locator("#vm-save").is_disabled()


@browser_test
def test_role_that_does_not_fit_is_refused_with_the_problem(tb, logdir, new_page):
    run = "conv_bias"
    res = tb.get_json("variables?run=" + run)
    v = next(v for v in res["variables"] if v["variable"] == "conv/kernel")
    bad = next(r for r, spec in sorted(res["roles"].items()) if spec.get("ranks") and len(v["shape"]) not in spec["ranks"])
    page = open_panel(new_page(), tb, run)
    page.locator('.gitem.var[data-name="conv/kernel"]').click()
    picker = page.locator('.details select.role-picker[data-variable="conv/kernel"]')
    assert "needs rank" in picker.locator('option[value="%s"]' % bad).inner_text()
    picker.select_option(bad)
    page.locator("#vm-save").click()
    msg = page.wait_for_selector(".msg.error", timeout=30000).inner_text()
    assert "conv/kernel" in msg and "Not saved" in msg
    path = os.path.join(logdir, run, "varmap", "tags.json")
    assert not os.path.exists(path) or tags_file(logdir, run)["variables"].get("conv/kernel", {}).get("role") != bad
    assert "1 unsaved" in page.locator("#vm-save").inner_text()  # the edit is kept to fix


@browser_test
def test_step_selector_reloads_variables_for_that_step(tb, new_page):
    page = open_panel(new_page(), tb, BIG_RUN)
    steps = [o.get_attribute("value") for o in page.locator("#vm-step option").all()]
    assert len(steps) >= 2
    with page.expect_response(lambda r: "/variables?" in r.url and "step=" + steps[0] in r.url) as resp:
        page.locator("#vm-step").select_option(steps[0])
    assert resp.value.ok
    assert resp.value.json()["step"] == int(steps[0])
    page.wait_for_selector("table.vt tbody tr[data-variable]")


@browser_test
def test_stale_save_gets_conflict_ui_and_never_overwrites(tb, logdir, new_page):
    run = BIG_RUN
    variable = next(v["variable"] for v in tb.get_json("variables?run=" + run)["variables"]
                    if v["kind"] == "weight" and v["shape"] and len(v["shape"]) == 1)
    roles = list(other_role(tb, run, variable))
    a, b = open_panel(new_page(), tb, run), open_panel(new_page(), tb, run)
    for page, role in ((a, roles[0]), (b, roles[1])):
        page.locator('table.vt tr[data-variable="%s"]' % variable).click()
        page.locator('.details select.role-picker[data-variable="%s"]' % variable).select_option(role)
    a.locator("#vm-save").click()
    a.wait_for_selector(".msg.ok", timeout=30000)
    rev_a = tags_file(logdir, run)["revision"]

    b.locator("#vm-save").click()
    dialog = b.wait_for_selector(".dialog.conflict", timeout=30000)
    text = dialog.inner_text()
    assert roles[0] in text and roles[1] in text  # stored vs yours
    shot(b, "conflict")
    stored = tags_file(logdir, run)
    assert stored["variables"][variable]["role"] == roles[0] and stored["revision"] == rev_a

    b.locator("#vm-merge").click()  # keep mine, explicitly, on top of the stored revision
    assert b.locator(".dialog.conflict").count() == 0
    b.locator("#vm-save").click()
    b.wait_for_selector(".msg.ok", timeout=30000)
    stored = tags_file(logdir, run)
    assert stored["variables"][variable]["role"] == roles[1] and stored["revision"] > rev_a


@browser_test
def test_pick_model_output_from_context_menu(tb, logdir, new_page):
    page = open_panel(new_page(), tb, RUN)
    page.locator('.gitem[data-name="dense/MatMul"]').click(button="right")
    page.locator(".ctxmenu .mi", has_text="model output").click()
    page.locator("#vm-save").click()
    page.wait_for_selector(".msg.ok", timeout=30000)
    assert "dense/MatMul:0" in tags_file(logdir, RUN)["outputs"]


@browser_test
def test_diverging_layer_from_report_is_highlighted(tb, logdir, new_page):
    # A stored report (as GET report serves it) whose only layer diverges.
    err = {"max_abs": 0.25, "max_rel": 0.5, "mean_abs": 0.1, "status": "FAILED"}
    report = {
        "format_version": 1, "run": RUN, "attempt": 7, "created": "2026-01-01T00:00:00+00:00",
        "conversion": {"layers": [{"layer": "dense", "keras_class": "Dense", "standard": True,
                                   "tf_nodes": ["dense/MatMul"], "variables": []}],
                       "standard_weights": {"count": 1, "params": 50}, "custom_weights": {"count": 0, "params": 0},
                       "unsupported": {"by_op": {}, "nodes": []}},
        "verification": {"atol": 1e-5, "rtol": 1e-5, "passed": False,
                         "layers": [{"layer": "dense", "tf_outputs": ["dense/MatMul:0"], "isolated": err, "cumulative": err}],
                         "gradients": [],
                         "outputs": [{"name": "dense/MatMul:0", **err,
                                      "sample": {"original": [0.0, 1.0, 2.0], "keras": [0.1, 1.2, 2.25]},
                                      "error_histogram": {"edges": [0.0, 0.125, 0.25], "counts": [1, 2]}}]},
    }
    os.makedirs(os.path.join(logdir, RUN, "varmap"), exist_ok=True)
    with open(os.path.join(logdir, RUN, "varmap", "report.json"), "w") as f:
        json.dump(report, f)
    page = open_panel(new_page(), tb, RUN)
    page.wait_for_selector('.gitem.div-FAILED[data-name="dense/MatMul"]', timeout=30000, state="attached")
    page.locator("button.tab", has_text="Verification").click()
    row = page.wait_for_selector(".verify-pane tr.st-FAILED")
    assert "attempt 7" in page.locator(".verify-pane").inner_text()
    assert page.locator(".verify-pane .chart canvas").count() >= 3
    row.click()  # back to the graph, on the diverging node
    page.wait_for_selector('.gitem.selected[data-name="dense/MatMul"]', timeout=30000)


@browser_test
def test_export_produces_model_and_charts(tb, logdir, new_page):
    page = open_panel(new_page(), tb, "conv_bias")
    page.locator("#vm-export").click()
    page.wait_for_selector("#vm-progress, #vm-result", timeout=30000)
    result = page.wait_for_selector("#vm-result", timeout=240000)
    assert "model.keras" in result.inner_text()
    assert os.path.exists(os.path.join(logdir, "conv_bias", "varmap", "model.keras"))
    shot(page, "export_result")
    page.locator("button.tab", has_text="Verification").click()
    page.wait_for_selector(".verify-pane table.vtab tbody tr", timeout=30000)
    assert page.locator(".verify-pane .chart canvas").count() >= 3
    shot(page, "verification")
    assert not page.errors


def test_panel_unit_tests_pass_in_node():
    """The panel's pure modules (graph folding, search, tag edits) under `node --test`."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    out = subprocess.run([node, "--test", "test/"], cwd=FRONTEND, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass " in out.stdout
