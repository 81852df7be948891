"""Legacy model families: `tb-varmap export --verify --json` per family run and real fixture.

Regenerates `bench/families_results.md` (the table) and `bench/results/families.json` (every
figure, the exact command per run, the machine, the commit). The family model_dirs are
generated fresh (`tb_varmap.demo.families`, every family in the variants ref, resource and
tf1) and the real fixtures (`REAL` below) are copied from ../shared/fixtures/real, all into
one temp logdir. Each run is one `python -m tb_varmap.cli export --logdir L --run R --verify
--json` child; its wall time, exit status and report are recorded. A run that is refused or
fails is a row with its one-line reason, never the end of the script.

Per family run the export names the family's inputs and outputs (`--inputs x,lengths
--outputs seq:0,y:0`, from FAMILIES), `fam_ema` takes `--weights ema`, and families with an
int "lengths" input are fed `sample_feed()` through `--inputs-npz` (valid lengths 1..T, one
full and one short row). Everything else (batch 2, seeded random inputs, atol = rtol =
1e-5) is the CLI's default. Real fixtures use the CLI's defaults only.

  python -m bench.families                        # everything; writes the table
  python -m bench.families --smoke --out /tmp/x   # 2 tiny runs, table + JSON under /tmp/x
  python -m bench.families --models fam_lstm,ctc_conv_lstm_tf11 --variants tf1
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from bench import common
from bench.fidelity import _phase_times, run_cli

REAL_DIR = os.path.normpath(os.path.join(common.REPO, "..", "shared", "fixtures", "real"))
REAL = ["charrnn_lstm_tf012", "ctc_conv_lstm_tf11", "half_plus_two_v1_checkpoint",
        "half_plus_two_savedmodel"]
VARIANTS = ("ref", "resource", "tf1")
SMOKE = (["fam_embedding"], ("ref",), ["half_plus_two_v1_checkpoint"])
TABLE = os.path.join(common.REPO, "bench", "families_results.md")
KEEP_MARK = "<!-- bench/families.py writes everything above this line; notes below it are kept -->"


# ---------------------------------------------------------------- preparing the logdir

def generate(logdir, models, variants):
    """Family model_dirs under logdir: ({run: (model, variant)}, {run: error}, seconds).
    One generator child for all; if it fails, one per model so a broken family costs only
    its own rows."""
    from tb_varmap.demo.families import generate_families, run_name

    start = time.perf_counter()
    runs, errors = {}, {}
    try:
        generate_families(logdir, models, variants, timeout=1800)
        runs = {run_name(m, v): (m, v) for m in models for v in variants}
    except Exception:                                       # noqa: BLE001 (retry per model)
        for m in models:
            try:
                generate_families(logdir, [m], variants, timeout=600)
                runs.update({run_name(m, v): (m, v) for v in variants})
            except Exception as e:                          # noqa: BLE001 (a row, not a crash)
                for v in variants:
                    errors[run_name(m, v)] = "generation failed: " + _last_line(str(e))
    return runs, errors, time.perf_counter() - start


def copy_real(logdir, names):
    """Copies the real fixtures into logdir (writable); returns {name: error or None}."""
    out = {}
    for name in names:
        src = os.path.join(REAL_DIR, name)
        if not os.path.isdir(src):
            out[name] = "fixture not found: %s" % src
            continue
        dst = os.path.join(logdir, name)
        shutil.copytree(src, dst, copy_function=shutil.copyfile)
        for root, dirs, files in os.walk(dst):
            for entry in dirs + files:
                os.chmod(os.path.join(root, entry), 0o755 if entry in dirs else 0o644)
        out[name] = None
    return out


# ---------------------------------------------------------------- one export

def export_args(logdir, run, model_path, family=None, npz=None):
    args = ["export", "--logdir", logdir, "--run", run, "--verify", "--json", "--out", model_path]
    if family is not None:
        args += ["--inputs", ",".join(family.inputs), "--outputs", ",".join(family.outputs)]
        if family.name == "fam_ema":
            args += ["--weights", "ema"]
        if npz:
            args += ["--inputs-npz", npz]
    return args


def write_feed(path, model):
    """sample_feed(model) as an .npz for --inputs-npz (families with int lengths)."""
    import numpy as np

    from tb_varmap.demo.families import sample_feed

    np.savez(path, **sample_feed(model))
    return path


def export_one(args, timeout):
    rc, out, lines, stats = run_cli(args, timeout)
    row = {"exit": rc, "wall_s": round(stats["wall_s"], 2),
           "peak_rss_mib": round(stats["peak_rss_mib"], 1),
           **{k: v for k, v in _phase_times(lines, stats["wall_s"]).items() if k != "phases_s"}}
    errors = [line.strip() for _, line in lines if "%" not in line[:5] and line.strip()]
    try:
        report = json.loads(out) if out.strip() else None
    except ValueError:
        report = None
    if rc == -9:
        row["error"] = "timed out after %d s" % timeout
    elif report is None or rc not in (0, 1):
        row["error"] = errors[-1] if errors else "exit %s, no JSON report" % rc
    if report is not None:
        row.update(summarize(report))
    return row


def summarize(report):
    """The table's figures from one export report."""
    v = report.get("verification") or {}
    conv = report.get("conversion") or {}
    layers = conv.get("layers") or []
    grads = v.get("gradients") or []
    std = (conv.get("standard_weights") or {}).get("params") or 0
    custom = (conv.get("custom_weights") or {}).get("params") or 0
    return {
        "passed": v.get("passed"),
        "inputs": report.get("inputs"), "outputs": report.get("outputs"),
        "weights": report.get("weights"),
        "atol": v.get("atol"), "rtol": v.get("rtol"),
        "keras_layers": sorted({layer.get("keras_class") for layer in layers
                                if layer.get("keras_class")}),
        "layers": len(layers),
        "isolated": _worst(lyr.get("isolated") for lyr in v.get("layers") or []),
        "cumulative": _worst(lyr.get("cumulative") for lyr in v.get("layers") or []),
        "outputs_cmp": _worst(v.get("outputs") or []),
        "gradients": {
            **_worst(grads), "compared": len(grads),
            "ok": sum(1 for g in grads if g.get("status") == "OK"),
            "not_ok": [{k: g.get(k) for k in ("variable", "status", "max_abs", "tolerance",
                                              "reason")}
                       for g in grads if g.get("status") != "OK"]},
        "standard_params": std, "custom_params": custom,
        "standard_share": std / (std + custom) if std + custom else None,
        "unsupported": (conv.get("unsupported") or {}).get("by_op"),
    }


def _worst(parts):
    """max abs / max rel over comparison dicts, and how many have each status."""
    out = {"max_abs": None, "max_rel": None, "statuses": {}}
    for p in parts:
        if not isinstance(p, dict):
            continue
        for key in ("max_abs", "max_rel"):
            if isinstance(p.get(key), (int, float)):
                out[key] = p[key] if out[key] is None else max(out[key], p[key])
        status = p.get("status")
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
    return out


def _last_line(text):
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------- the table

def _e(x):
    return "—" if x is None else "%.1e" % x


def _cell(text, limit=300):
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def result_cell(row):
    if row.get("error"):
        return "exit %s: %s" % (row.get("exit"), _cell(row["error"], 200))
    return "passed" if row.get("passed") else "not passed (exit %s)" % row.get("exit")


def gradients_cell(g):
    if not g or not g.get("compared"):
        return "—"
    text = "%d/%d OK, max %s" % (g["ok"], g["compared"], _e(g["max_abs"]))
    by_status = {}
    for bad in g["not_ok"]:
        by_status.setdefault(bad["status"], []).append(bad["variable"])
    for status in sorted(by_status):
        text += "; %s: %s" % (status, ", ".join(by_status[status]))
    return _cell(text, 400)


def table_rows(rows):
    out = ["| run | result | Keras layers | iso max abs / rel | cumulative max abs | "
           "outputs max abs / rel | gradients | std params | export+verify s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["run"] + (" (weights=ema)" if r.get("weights") == "ema" else "")
        if "isolated" not in r:
            out.append("| %s | %s | — | — | — | — | — | — | %s |" % (
                name, result_cell(r), "—" if r.get("wall_s") is None else "%.1f" % r["wall_s"]))
            continue
        share = r.get("standard_share")
        std = "—" if share is None else "%.0f%% (%d of %d)" % (
            100 * share, r["standard_params"], r["standard_params"] + r["custom_params"])
        out.append("| %s | %s | %s | %s / %s | %s | %s / %s | %s | %s | %.1f |" % (
            name, result_cell(r), _cell(", ".join(r["keras_layers"]) or "—"),
            _e(r["isolated"]["max_abs"]), _e(r["isolated"]["max_rel"]),
            _e(r["cumulative"]["max_abs"]),
            _e(r["outputs_cmp"]["max_abs"]), _e(r["outputs_cmp"]["max_rel"]),
            gradients_cell(r.get("gradients")), std, r["wall_s"]))
    return out


def markdown(payload):
    rows = payload["runs"]
    s = payload["settings"]
    lines = [
        "# Legacy model families: fidelity and cost", "",
        "Generated by `%s` (bench/families.py) on %s, commit %s; %s; load average at the end "
        "%s. Do not edit above the marker line: re-run the command." % (
            payload["command"].strip(), payload["finished"], payload["revision"], payload["machine"],
            " / ".join("%.1f" % x for x in payload["loadavg_at_end"])),
        "",
        "Each row is one `tb-varmap export --logdir L --run R --verify --json` in a child "
        "process; \"export+verify s\" is its wall time (interpreter start, imports, read, "
        "convert, save, verify, log). `fam_*` runs come from `tb_varmap/demo/families.py` "
        "(suffix: none = ref variables + control flow v2, `_resource` = resource variables "
        "+ control flow v2, `_tf1` = ref variables + control flow v1 loops, as TF 1.x wrote "
        "them); the others are copies of ../shared/fixtures/real. Family exports name the "
        "family's inputs and outputs; `fam_ema` exports its EMA weights; families with a "
        "`lengths` input get `sample_feed()` (lengths 1..T) as `--inputs-npz`; otherwise "
        "verify's seeded inputs (batch 2). Tolerances: atol %s, rtol %s (CLI defaults). "
        "Errors are the maxima over all layers (isolated, cumulative), over all outputs and "
        "over all gradient rows (the gradients cell names every variable not OK). \"std "
        "params\" is the share of exported parameters held by standard Keras layers." % (
            s.get("atol", "1e-05"), s.get("rtol", "1e-05")),
        "",
        "%d runs: %d passed, %d exported but not passed, %d refused or failed." % (
            len(rows), sum(1 for r in rows if r.get("passed") and not r.get("error")),
            sum(1 for r in rows if "isolated" in r and not r.get("passed") and not r.get("error")),
            sum(1 for r in rows if r.get("error"))),
        "",
    ]
    lines += table_rows(rows)
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Refused or failed, with the reason the CLI gave (one line each):"]
        lines += ["- `%s` (exit %s): %s" % (r["run"], r.get("exit"), _cell(r["error"], 1000))
                  for r in failed]
    bad_grads = [(r["run"], g) for r in rows for g in (r.get("gradients") or {}).get("not_ok", [])]
    if bad_grads:
        lines += ["", "Gradient rows not OK, with verify's reason:"]
        lines += ["- `%s` %s: %s, max abs %s (tolerance %s)%s" % (
            run, g["variable"], g["status"], _e(g.get("max_abs")), _e(g.get("tolerance")),
            " — " + _cell(g["reason"], 300) if g.get("reason") else "") for run, g in bad_grads]
    return "\n".join(lines) + "\n"


def write_table(path, text):
    """Writes the generated part; hand-written notes after KEEP_MARK in the old file stay."""
    kept = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if KEEP_MARK in old:
            kept = old.split(KEEP_MARK, 1)[1]
    with open(path + ".tmp", "w") as f:
        f.write(text + "\n" + KEEP_MARK + (kept or "\n"))
    os.replace(path + ".tmp", path)
    return path


# ---------------------------------------------------------------- main

def plan(models_arg, variants, smoke):
    """(family models, variants, real fixtures) to run."""
    from tb_varmap.demo.families import FAMILIES

    if smoke:
        return SMOKE
    if not models_arg:
        return list(FAMILIES), variants, list(REAL)
    names = [m for m in models_arg.split(",") if m]
    unknown = [m for m in names if m not in FAMILIES and m not in REAL]
    if unknown:
        raise SystemExit("unknown model(s) %s; families: %s; real: %s"
                         % (unknown, ", ".join(FAMILIES), ", ".join(REAL)))
    return [m for m in names if m in FAMILIES], variants, [m for m in names if m in REAL]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Results: <out>/families[_smoke|_partial].json; "
                                        "table: bench/families_results.md for a full run, "
                                        "<out>/families_results_{smoke,partial}.md otherwise")
    ap.add_argument("--smoke", action="store_true",
                    help="2 tiny runs: fam_embedding (ref) and half_plus_two_v1_checkpoint")
    ap.add_argument("--models", help="comma list of family names and/or real fixtures "
                                     "(%s); default all" % ", ".join(REAL))
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma list of family variants (default %(default)s)")
    ap.add_argument("--timeout", type=int, default=600, help="per export, seconds")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"),
                    help="directory of the JSON (default bench/results)")
    ap.add_argument("--table", help="markdown path (default: see below)")
    args = ap.parse_args(argv)
    variants = tuple(v for v in args.variants.split(",") if v)
    if set(variants) - set(VARIANTS):
        ap.error("unknown variant(s) %s" % sorted(set(variants) - set(VARIANTS)))
    models, variants, real = plan(args.models, variants, args.smoke)
    full = not args.smoke and not args.models and set(variants) == set(VARIANTS)
    name = "families" + ("_smoke" if args.smoke else "" if full else "_partial")
    table = args.table or (TABLE if full else os.path.join(args.out, name.replace(
        "families", "families_results") + ".md"))

    from tb_varmap.demo.families import FAMILIES, run_name

    work = tempfile.mkdtemp(prefix="bench_families_")
    logdir = os.path.join(work, "logdir")
    os.makedirs(logdir)
    rows = []
    try:
        fam_runs, gen_errors, gen_s = generate(logdir, models, variants) if models else ({}, {}, 0.0)
        print("generated %d family runs in %.1f s (%d failed)" % (len(fam_runs), gen_s,
                                                                 len(gen_errors)), flush=True)
        real_errors = copy_real(logdir, real)
        todo = [(run_name(m, v), m, v) for m in models for v in variants]
        todo += [(r, r, None) for r in real]
        for run, model, variant in todo:
            family = FAMILIES.get(model) if variant else None
            base = {"run": run, "model": model, "variant": variant,
                    "source": "family" if variant else "real"}
            error = gen_errors.get(run) if variant else real_errors.get(run)
            if error or (variant and run not in fam_runs):
                rows.append(dict(base, exit=None, wall_s=None, error=error or "not generated"))
                print("%-34s %s" % (run, rows[-1]["error"]), flush=True)
                continue
            npz = None
            if family is not None and any(k == "lengths" for k in family.inputs):
                npz = write_feed(os.path.join(work, run + "_feed.npz"), model)
            model_path = os.path.join(work, "models", run + ".keras")
            cli_args = export_args(logdir, run, model_path, family, npz)
            try:
                row = export_one(cli_args, args.timeout)
            except Exception as e:                         # noqa: BLE001 (a row, not a crash)
                row = {"exit": None, "wall_s": None, "error": "bench: %s: %s"
                       % (type(e).__name__, _last_line(e))}
            row = dict(base, **row, command="tb-varmap " + " ".join(
                a.replace(work, "$WORK") for a in cli_args), feed="sample_feed npz" if npz else "verify's")
            rows.append(row)
            print("%-34s exit=%s %5.1fs iso=%s out=%s grads=%s %s" % (
                run, row["exit"], row["wall_s"] or 0, _e((row.get("isolated") or {}).get("max_abs")),
                _e((row.get("outputs_cmp") or {}).get("max_abs")),
                gradients_cell(row.get("gradients"))[:60], (row.get("error") or "")[:100]),
                flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    atols = {r.get("atol") for r in rows if r.get("atol") is not None}
    rtols = {r.get("rtol") for r in rows if r.get("rtol") is not None}
    settings = {"models": models, "variants": list(variants), "real": real,
                "timeout_s": args.timeout, "generation_s": round(gen_s, 1),
                "atol": ", ".join(map(str, sorted(atols))) or None,
                "rtol": ", ".join(map(str, sorted(rtols))) or None}
    path = common.save(args.out, name, {"settings": settings, "runs": rows})
    with open(path) as f:
        payload = json.load(f)
    print("wrote", path)
    print("wrote", write_table(table, markdown(payload)))
    return payload


if __name__ == "__main__":
    main()
    sys.exit(0)
