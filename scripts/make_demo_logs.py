"""Regenerate the committed demo_logs/ logdir: `python scripts/make_demo_logs.py [--out DIR]`.

Writes every core demo model and two legacy-layer ones with ref variables (run `<model>`)
and a few with resource variables (run `<model>_resource`) into a temporary sibling, then swaps it in place of the
old folder, so a failed run leaves the old demo_logs untouched.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tb_varmap.demo.generate import generate  # noqa: E402

CORE = ["dense_nobias", "conv_bias", "custom_sigmoid", "cnn_bn_adam", "mlp_estimator_style",
        "partitioned_embedding"]
RESOURCE = ["dense_nobias", "custom_sigmoid", "cnn_bn_adam"]
LEGACY = ["legacy_lstm", "legacy_slim_cnn"]      # rnn_cell / tf_slim, ref variables

README = """# demo_logs

A small TensorBoard logdir of real TF1-style model_dirs, written by
`python scripts/make_demo_logs.py` (do not edit by hand). Each run is a model_dir:
graph (event file, or `graph.pbtxt`), `model.ckpt-<step>.*` checkpoints with `.meta`, and
the `checkpoint` state file. `<model>` uses ref variables (`VariableV2` + `/read`),
`<model>_resource` resource variables (`VarHandleOp` + `ReadVariableOp`).

| run | inputs | outputs | steps | what it is |
|---|---|---|---|---|
"""


def _readme(written):
    from tb_varmap.demo.tf1_models import MODELS  # TF, but no legacy Keras state

    rows = []
    for name in written:
        spec = MODELS[name.replace("_resource", "")]
        inputs = ", ".join(f"`{k}` {list(s)}" for k, (s, _) in spec.inputs.items())
        outputs = ", ".join(f"`{o}`" for o in spec.outputs)
        summary = " ".join(spec.description.split("\n\n")[0].split())
        rows.append(f"| `{name}` | {inputs} | {outputs} | {spec.steps} | {summary} |")
    return README + "\n".join(rows) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "demo_logs"))
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    tmp, old = out + ".tmp", out + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    written = generate(tmp, models=CORE + LEGACY, variants=("ref",))
    written.update(generate(tmp, models=RESOURCE, variants=("resource",)))
    with open(os.path.join(tmp, "README.md"), "w") as f:
        f.write(_readme(sorted(written)))
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(out):
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    for name in sorted(written):
        print(f"wrote {os.path.join(out, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
