"""Fidelity and cost per model: `tb-varmap export --verify --json` on every demo and real run.

Every demo model (`generate(..., models="all")`, ref and resource variants) and a copy of
every real TF1 fixture is exported in its own child process. Per run: the largest abs and
rel error of the isolated layer comparisons, the cumulative ones, the gradients and the
outputs; export time, verify time (from the CLI's progress lines), the child's start-up
(imports), its wall time and peak RSS (wait4 rusage); exit status and error message.
With --speed each exported model is then timed against the original graph (bench/speed.py).

  python -m bench.fidelity --speed
  python -m bench.fidelity --smoke --out /tmp/x
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench import common

REAL = os.path.normpath(os.path.join(common.REPO, "..", "shared", "fixtures", "real"))
SMOKE_MODELS = ["dense_nobias"]


def _max(rows, section, key):
    values = []
    for row in rows or []:
        part = row.get(section, row) if section else row
        if isinstance(part, dict) and isinstance(part.get(key), (int, float)):
            values.append(part[key])
    return max(values) if values else None


def _statuses(rows, section=None):
    counts = {}
    for row in rows or []:
        part = row.get(section, row) if section else row
        status = part.get("status") if isinstance(part, dict) else None
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_cli(args, timeout):
    """Runs `python -m tb_varmap.cli ARGS`; returns (rc, stdout, stderr lines with times, stats)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tb_varmap.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=common.child_env())
    lines = []

    def read_err():
        for line in proc.stderr:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    out_chunks = []
    out_reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    out_reader.start()
    deadline = time.time() + timeout
    rc = rusage = None
    samples = []  # (seconds, RSS MiB) of the child, to attribute the peak to a phase
    while rc is None:
        try:
            samples.append((time.perf_counter() - start, common.rss_mib(proc.pid)[0]))
        except (OSError, TypeError):
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            rc, rusage = os.waitstatus_to_exitcode(status), usage
            proc.returncode = rc
        elif time.time() > deadline:
            proc.kill()
            _, status, rusage = os.wait4(proc.pid, 0)
            rc = -9
            proc.returncode = rc
        else:
            time.sleep(0.02)
    wall = time.perf_counter() - start
    reader.join(5)
    out_reader.join(5)
    stats = {"wall_s": wall, "peak_rss_mib": rusage.ru_maxrss / 1024.0, "user_s": rusage.ru_utime,
             "sys_s": rusage.ru_stime, "rss_by_phase_mib": _rss_by_phase(samples, lines)}
    return rc, "".join(out_chunks), lines, stats


def _rss_by_phase(samples, lines):
    """Largest sampled RSS between consecutive progress lines: {"converting": MiB, ...}."""
    marks = [(0.0, "start")] + [(t, line.split("%", 1)[-1].strip()) for t, line in lines if "%" in line[:5]]
    out = {}
    for i, (t0, name) in enumerate(marks):
        t1 = marks[i + 1][0] if i + 1 < len(marks) else float("inf")
        values = [rss for t, rss in samples if t0 <= t < t1 and rss is not None]
        if values:
            out[name] = round(max(max(values), out.get(name, 0.0)), 1)
    return out


def _phase_times(lines, wall):
    """export/verify seconds from progress lines ("  2% reading run", " 65% verifying", ...)."""
    def first(word):
        return next((t for t, line in lines if line.split("%", 1)[-1].strip().startswith(word)), None)

    t_read, t_verify, t_log = first("reading run"), first("verifying"), first("logging verification")
    t_done = first("done") or wall
    marks = [("read_run", "reading run"), ("read_checkpoint", "reading checkpoint values"),
             ("convert", "converting"), ("save", "saving model"), ("verify", "verifying"),
             ("log", "logging verification"), ("end", "done")]
    times = [(name, first(word)) for name, word in marks]
    times = [(name, t) for name, t in times if t is not None]
    phases = {a: round(tb - ta, 3) for (a, ta), (_, tb) in zip(times, times[1:])}
    return {"startup_s": t_read, "phases_s": phases,
            "export_s": (t_verify or t_done) - t_read if t_read is not None else None,
            "verify_s": (t_log or t_done) - t_verify if t_verify is not None else None}


def export_one(logdir, run, model_path, timeout):
    args = ["export", "--logdir", logdir, "--run", run, "--verify", "--json", "--out", model_path]
    rc, out, lines, stats = run_cli(args, timeout)
    row = {"run": run, "logdir": os.path.basename(logdir), "exit": rc, **stats,
           **_phase_times(lines, stats["wall_s"]),
           "progress": [[round(t, 2), line.strip()] for t, line in lines if "%" in line[:5]]}
    errors = [line for _, line in lines if "%" not in line[:5] and line.strip()]
    if rc == -9:
        row["error"] = "timed out after %d s" % timeout
    try:
        report = json.loads(out) if out.strip() else None
    except ValueError:
        report = None
    if report is None:
        row.setdefault("error", errors[-1] if errors else "no JSON report (exit %s)" % rc)
        return row
    v = report.get("verification") or {}
    conv = report.get("conversion") or {}
    row.update({
        "passed": v.get("passed"),
        "isolated_max_abs": _max(v.get("layers"), "isolated", "max_abs"),
        "isolated_max_rel": _max(v.get("layers"), "isolated", "max_rel"),
        "cumulative_max_abs": _max(v.get("layers"), "cumulative", "max_abs"),
        "cumulative_max_rel": _max(v.get("layers"), "cumulative", "max_rel"),
        "gradients_max_abs": _max(v.get("gradients"), None, "max_abs"),
        "gradients_max_rel": _max(v.get("gradients"), None, "max_rel"),
        "outputs_max_abs": _max(v.get("outputs"), None, "max_abs"),
        "outputs_max_rel": _max(v.get("outputs"), None, "max_rel"),
        "status_isolated": _statuses(v.get("layers"), "isolated"),
        "status_cumulative": _statuses(v.get("layers"), "cumulative"),
        "status_gradients": _statuses(v.get("gradients")),
        "status_outputs": _statuses(v.get("outputs")),
        "worst": v.get("worst", [])[:5],
        "not_ok": [{k: row.get(k) for k in ("layer", "variable", "name", "status", "reason", "max_abs", "max_rel")}
                   for section in ("gradients", "outputs") for row in v.get(section) or []
                   if row.get("status") != "OK"][:10],
        "layers": len(conv.get("layers", [])),
        "standard_params": (conv.get("standard_weights") or {}).get("params"),
        "custom_params": (conv.get("custom_weights") or {}).get("params"),
        "unsupported": (conv.get("unsupported") or {}).get("by_op"),
        "inputs": report.get("inputs"), "outputs": report.get("outputs"),
        "model_path": model_path,
    })
    if rc not in (0, 1):
        row["error"] = errors[-1] if errors else "exit %s" % rc
    return row


def list_runs(logdir):
    rc, out, lines, _ = run_cli(["runs", "--logdir", logdir, "--json"], 300)
    if rc != 0:
        raise RuntimeError("tb-varmap runs --logdir %s failed (exit %s): %s"
                           % (logdir, rc, lines[-1][1] if lines else ""))
    return json.loads(out)


def prepare(work, smoke):
    """Writes the demo logdir and a copy of the real fixtures; returns [(logdir, runs | None)]
    (None: list the runs with `tb-varmap runs`)."""
    from tb_varmap.demo.generate import generate

    demo = os.path.join(work, "demo")
    if smoke:
        return [(demo, sorted(generate(demo, models=SMOKE_MODELS, variants=("ref",))))]
    logdirs = [(demo, sorted(generate(demo, models="all", variants=("ref", "resource"))))]
    if os.path.isdir(REAL):
        real = os.path.join(work, "real")
        shutil.copytree(REAL, real, copy_function=shutil.copyfile)
        for root, dirs, files in os.walk(real):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
        logdirs.append((real, None))
    return logdirs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one tiny model")
    ap.add_argument("--speed", action="store_true", help="also time each exported model (bench/speed.py)")
    ap.add_argument("--runs", help="comma list: only these run names")
    ap.add_argument("--timeout", type=int, default=900, help="per export, seconds")
    ap.add_argument("--out", default=os.path.join(common.REPO, "bench", "results"))
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench_fidelity_")
    rows, speed_rows = [], []
    try:
        for logdir, runs in prepare(work, args.smoke):
            for entry in ([{"run": r} for r in runs] if runs is not None else list_runs(logdir)):
                run = entry["run"]
                if args.runs and run not in args.runs.split(","):
                    continue
                model_path = os.path.join(work, "models", os.path.basename(logdir), run.replace("/", "_") + ".keras")
                row = export_one(logdir, run, model_path, args.timeout)
                row["run_listing_error"] = entry.get("error")
                rows.append(row)
                print("%-36s exit=%s iso=%s cum=%s grad=%s out=%s export=%.1fs verify=%s rss=%.0fMiB %s" % (
                    run, row["exit"], _e(row.get("isolated_max_abs")), _e(row.get("cumulative_max_abs")),
                    _e(row.get("gradients_max_abs")), _e(row.get("outputs_max_abs")), row.get("export_s") or 0,
                    _s(row.get("verify_s")), row["peak_rss_mib"], row.get("error", "")[:120]), flush=True)
                if args.speed and os.path.exists(model_path):
                    speed_rows.append(_speed(logdir, run, model_path, args.smoke))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    suffix = "_smoke" if args.smoke else ""
    print("wrote", common.save(args.out, "fidelity" + suffix, {"runs": rows}))
    if args.speed:
        print("wrote", common.save(args.out, "speed" + suffix, {"runs": speed_rows}))
    return rows, speed_rows


def _speed(logdir, run, model_path, smoke):
    cmd = [sys.executable, "-m", "bench.speed", "--logdir", logdir, "--run", run, "--model", model_path]
    if smoke:
        cmd.append("--smoke")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=common.child_env(), cwd=common.REPO,
                          timeout=900)
    try:
        row = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = proc.stderr.strip().splitlines()
        row = {"run": run, "error": tail[-1] if tail else "exit %d" % proc.returncode}
    print("   speed %-30s %s" % (run, {k: row.get(k) for k in ("ratio", "keras_s", "graph_s", "error")}), flush=True)
    return row


def _e(x):
    return "—" if x is None else "%.1e" % x


def _s(x):
    return "—" if x is None else "%.1fs" % x


if __name__ == "__main__":
    main()
