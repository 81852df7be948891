"""Child process of a background export: `python -m tb_varmap.worker --logdir L --run R --params JSON`.

Writes JSON lines to stdout: {"progress", "stage", "message"}, then {"result"} or {"error"}.
"""

import argparse
import json
import sys


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tb_varmap.worker")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    params = json.loads(args.params)

    def progress(fraction, message):
        _emit({"progress": round(float(fraction), 4), "stage": message.split(":")[0], "message": message})

    from tb_varmap import export_run
    from tb_varmap.errors import VarMapError

    try:
        _, report = export_run.export(
            args.logdir,
            args.run,
            step=params.get("step"),
            inputs=params.get("inputs"),
            outputs=params.get("outputs"),
            weights=params.get("weights"),
            verify=params.get("verify", True),
            atol=params.get("atol", 1e-5),
            rtol=params.get("rtol", 1e-5),
            progress=progress,
        )
    except VarMapError as e:
        _emit({"error": str(e)})
        return 2
    except Exception as e:  # reported to the job, with the type for diagnosis
        _emit({"error": "export of run %r failed: %s: %s" % (args.run, type(e).__name__, e)})
        return 1
    _emit(
        {
            "result": {
                "model_path": report["model_path"],
                "report": report["conversion"],
                "verification": report["verification"],
                "attempt": report.get("attempt"),
            }
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
