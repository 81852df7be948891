"""`tb-varmap`: the plugin's work without the browser.

Exit status: 0 success, 1 verification found INACCURATE/FAILED comparisons,
2 bad input (one line on stderr naming the run, file, node or variable).
"""

import argparse
import json
import os
import sys

from tb_varmap.errors import VarMapError

EXIT_OK, EXIT_NOT_VERIFIED, EXIT_BAD_INPUT = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError("%s: %s" % (self.prog, message))


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def make_progress(stream=sys.stderr):
    """A progress bar on a terminal, plain lines otherwise."""
    last = {"message": None}

    def progress(fraction, message):
        if stream.isatty():
            width = 30
            filled = int(width * fraction)
            stream.write("\r[%s%s] %3d%% %-40s" % ("#" * filled, "." * (width - filled), 100 * fraction, message[:40]))
            if fraction >= 1.0:
                stream.write("\n")
        elif message != last["message"]:
            stream.write("%3d%% %s\n" % (100 * fraction, message))
        last["message"] = message
        stream.flush()

    return progress


def _run_data(args):
    from tb_varmap import run as run_mod
    from tb_varmap import runcache

    if not os.path.isdir(args.logdir):
        raise _BadLogdir("logdir %s is not a directory" % args.logdir)
    runcache.check_run_name(args.run)
    runs = run_mod.discover_runs(args.logdir)
    if args.run not in runs:
        raise _BadLogdir("run %r is not a run of logdir %s (runs: %s)" % (args.run, args.logdir, ", ".join(runs) or "none"))
    return run_mod.RunData(args.logdir, args.run)


class _BadLogdir(VarMapError):
    pass


def cmd_runs(args, out):
    from tb_varmap import runcache

    if not os.path.isdir(args.logdir):
        raise _BadLogdir("logdir %s is not a directory" % args.logdir)
    cache = runcache.RunCache(args.logdir)
    rows = [cache.describe(name) for name in cache.run_names()]
    if args.json:
        json.dump(rows, out, indent=1)
        out.write("\n")
        return EXIT_OK
    for row in rows:
        steps = row["checkpoint_steps"]
        out.write(
            "%-30s graph=%-12s steps=%s%s\n"
            % (row["run"], row["graph_source"] or "-", ",".join(map(str, steps)) or "-",
               ("  ERROR: " + row["error"]) if row.get("error") else "")
        )
    return EXIT_OK


def cmd_roles(args, out):
    from tb_varmap import plugin

    run_data = _run_data(args)
    result = plugin.variables_impl(run_data, args.step)
    rows = result["variables"]
    if args.json:
        json.dump(rows, out, indent=1)
        out.write("\n")
        return EXIT_OK
    out.write("run %s, checkpoint step %s\n" % (run_data.run, result["step"]))
    out.write("%-45s %-16s %-8s %-22s %5s %-8s %s\n" % ("variable", "shape", "dtype", "role", "conf", "source", "trainable"))
    for row in rows:
        out.write(
            "%-45s %-16s %-8s %-22s %5.2f %-8s %s\n"
            % (row["variable"], row["shape"], row["dtype"], row["role"] or "UNRESOLVED",
               row["confidence"], row["source"], row["trainable"])
        )
    out.write("totals: %s\n" % ", ".join("%s=%d" % kv for kv in sorted(result["totals"].items())))
    return EXIT_OK


def cmd_tag(args, out):
    from tb_varmap import tags as tags_mod

    run_data = _run_data(args)
    stored = tags_mod.load_tags(run_data.run_dir)
    update = {"base_revision": stored["revision"], "variables": {}}
    for item in args.set or []:
        name, sep, role = item.rpartition("=")
        if not sep or not name:
            raise tags_mod.BadInput("--set expects VARIABLE=ROLE, got %r" % item)
        update["variables"][name] = {"role": role}
    for name in args.clear or []:
        update["variables"][name] = None
    if args.step is not None:
        update["step"] = args.step
    if args.inputs:
        update["inputs"] = _names(args.inputs)
    if args.outputs:
        update["outputs"] = _names(args.outputs)
    if args.weights:
        update["weights"] = args.weights
    new = tags_mod.update_tags(run_data, update, where="tags for run %r" % run_data.run)
    out.write("saved %s (revision %d)\n" % (tags_mod.tags_path(run_data.run_dir), new["revision"]))
    return EXIT_OK


def _print_conversion(report, out):
    conversion = report["conversion"]
    out.write("model written to %s\n" % report["model_path"])
    for layer in conversion.get("layers", []):
        out.write("  %-40s %-26s %s\n" % (layer.get("name") or layer.get("layer"), layer.get("keras_class"),
                                         "" if layer.get("standard", True) else "(custom)"))
    std, custom = conversion.get("standard_weights", {}), conversion.get("custom_weights", {})
    out.write("weights in standard layers: %s (%s params); in custom layers: %s (%s params)\n"
              % (std.get("count"), std.get("params"), custom.get("count"), custom.get("params")))
    unsupported = conversion.get("unsupported", {}).get("by_op", {})
    if unsupported:
        out.write("unsupported ops: %s\n" % ", ".join("%s×%d" % kv for kv in sorted(unsupported.items())))


def _print_verification(verification, out):
    status = "PASSED" if verification["passed"] else "NOT PASSED"
    out.write("verification %s (atol=%g, rtol=%g)\n" % (status, verification["atol"], verification["rtol"]))
    for row in verification.get("outputs", []):
        out.write("  output %-30s max_abs=%s max_rel=%s %s\n" % (row["name"], row["max_abs"], row["max_rel"], row["status"]))
    if verification.get("gradient_tolerance"):
        out.write("  gradients: %s\n" % verification["gradient_tolerance"])
    for row in verification.get("gradients", []):
        if row["status"] != "OK":
            out.write("  gradient %-30s max_abs=%s tolerance=%s %s%s\n" % (
                row["variable"], row["max_abs"], row.get("tolerance"), row["status"],
                " (%s)" % row["reason"] if row.get("reason") else ""))
    cond = verification.get("conditionals")
    if cond:
        for note in cond.get("resolved", []):
            out.write("  resolved: %s\n" % note)
        for row in cond.get("outputs", []):
            out.write("  original graph (its own cond) vs resolved, %-10s max_abs=%s %s\n" % (
                row["name"], row.get("max_abs"), row["status"]))
    for name in verification.get("worst", [])[:5]:
        out.write("  worst: %s\n" % (name if isinstance(name, str) else json.dumps(name)))


def cmd_export(args, out):
    from tb_varmap import export_run

    _run_data(args)
    _, report = export_run.export(
        args.logdir,
        args.run,
        step=args.step,
        tags_file=args.tags,
        inputs=_names(args.inputs),
        outputs=_names(args.outputs),
        out=args.out,
        report_path=args.report,
        weights=args.weights,
        verify=args.verify,
        inputs_npz=args.inputs_npz,
        atol=args.atol,
        rtol=args.rtol,
        progress=make_progress(),
    )
    if not args.json:
        _print_conversion(report, out)
    return _finish_report(report, args.json, out)


def cmd_verify(args, out):
    from tb_varmap import verify_run

    run_data = _run_data(args)
    report = verify_run.verify_saved(
        run_data,
        model_path=args.model,
        inputs_npz=args.inputs_npz,
        atol=args.atol,
        rtol=args.rtol,
        progress=make_progress(),
    )
    return _finish_report(report, args.json, out)


def _finish_report(report, as_json, out):
    """Prints the report (JSON, or the verification summary); the exit status follows it."""
    verification = report["verification"]
    if as_json:
        json.dump(report, out, indent=1)
        out.write("\n")
    elif verification is not None:
        _print_verification(verification, out)
    if verification is not None and not verification["passed"]:
        return EXIT_NOT_VERIFIED
    return EXIT_OK


def build_parser():
    parser = _Parser(prog="tb-varmap", description="Port TF1 model_dirs to Keras 3, verified layer by layer.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_run(p):
        p.add_argument("--logdir", required=True, help="the TensorBoard logdir")
        p.add_argument("--run", default=".", help="run name ('.' = the logdir itself)")
        return p

    p = sub.add_parser("runs", help="list source runs of a logdir")
    p.add_argument("--logdir", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = with_run(sub.add_parser("roles", help="variables with their inferred or tagged roles"))
    p.add_argument("--step", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_roles)

    p = with_run(sub.add_parser("tag", help="set or clear role tags (stored in <run>/varmap/tags.json)"))
    p.add_argument("--set", action="append", metavar="VARIABLE=ROLE")
    p.add_argument("--clear", action="append", metavar="VARIABLE")
    p.add_argument("--step", type=int)
    p.add_argument("--inputs")
    p.add_argument("--outputs")
    p.add_argument("--weights", choices=["raw", "ema"])
    p.set_defaults(func=cmd_tag)

    p = with_run(sub.add_parser("export", help="build the Keras model (and verify it with --verify)"))
    p.add_argument("--tags", help="a tags JSON file to use instead of the run's tags.json")
    p.add_argument("--step", type=int)
    p.add_argument("--inputs", help="comma-separated node names: placeholders, or any node to feed "
                   "(e.g. a parsed feature); default: the inputs the outputs depend on")
    p.add_argument("--outputs", help="comma-separated tensor or node names")
    p.add_argument("--out", help="model path (default <run>/varmap/model.keras)")
    p.add_argument("--report", help="also write the report JSON here")
    p.add_argument("--weights", choices=["raw", "ema"])
    p.add_argument("--verify", action="store_true")
    p.add_argument("--inputs-npz")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_export)

    p = with_run(sub.add_parser("verify", help="compare the exported model with the original graph"))
    p.add_argument("--model", help="model path (default <run>/varmap/model.keras)")
    p.add_argument("--inputs-npz")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        return args.func(args, out)
    except _UsageError as e:
        sys.stderr.write("tb-varmap: %s\n" % e)
        return EXIT_BAD_INPUT
    except VarMapError as e:
        sys.stderr.write("tb-varmap: %s\n" % str(e).replace("\n", " "))
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
