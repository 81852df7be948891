"""Write demo TF1 model_dirs: `python -m tb_varmap.demo.generate --out DIR`.

Layout: the "ref" variant of model M goes to DIR/M, the "resource" variant to
DIR/M_resource. `--models` takes names from tf1_models.MODELS, or "core" (the six main
models, the default), "zoo" (one-op models), "legacy" (rnn_cell / tf_slim models, names
"legacy_*") or "all".

`generate()` runs the builders in a subprocess, so the calling process (tests, the plugin)
never gets their TF graph state; legacy models get a second subprocess with
TF_USE_LEGACY_KERAS=1 (the CLI needs that variable set for them). Existing model dirs of the
same name are replaced.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

from tb_varmap.errors import BadInput

VARIANT_SUFFIX = {"ref": "", "resource": "_resource"}
_MARK = "TB_VARMAP_GENERATED "
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_name(model, variant):
    """Directory name of one model variant: "dense_nobias", "dense_nobias_resource"."""
    return model + VARIANT_SUFFIX[variant]


def generate(out_dir, models=None, variants=("ref", "resource"), timeout=600):
    """Build `models` (names, or "core"/"zoo"/"legacy"/"all"; None = core) in `variants`.

    Writes under out_dir from a subprocess. Returns {run name: absolute model_dir path}.
    Raises BadInput for an unknown model or variant, RuntimeError if the generator fails.
    """
    if isinstance(models, str):
        models = [models]
    if isinstance(variants, str):
        variants = ["ref", "resource"] if variants == "both" else [variants]
    bad = [v for v in variants if v not in VARIANT_SUFFIX]
    if bad:
        raise BadInput(f"unknown variant(s) {bad}; expected 'ref', 'resource' or 'both'")
    models = list(models or ["core"])
    if "all" in models:
        models = [m for m in models if m != "all"] + ["core", "zoo", "legacy"]
    legacy = [m for m in models if _is_legacy(m)]
    plain = [m for m in models if not _is_legacy(m)]
    written = {}
    if plain:
        written.update(_run(out_dir, plain, variants, timeout, legacy=False))
    if legacy:
        written.update(_run(out_dir, legacy, variants, timeout, legacy=True))
    return written


def _is_legacy(name):
    return name == "legacy" or name.startswith("legacy_")


def _run(out_dir, models, variants, timeout, legacy):
    cmd = [sys.executable, "-m", "tb_varmap.demo.generate", "--out", os.path.abspath(out_dir),
           "--models", ",".join(models), "--variant", ",".join(variants)]
    env = dict(os.environ)
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"          # must be set before TF is imported
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [_REPO_ROOT, env.get("PYTHONPATH")] if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["TF_DETERMINISTIC_OPS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""          # CPU kernels: same values everywhere
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 2:
        raise BadInput(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                       else f"generator rejected models={models} variants={variants}")
    if proc.returncode != 0:
        raise RuntimeError(f"demo generator failed (exit {proc.returncode}) writing {out_dir}:\n"
                           + proc.stderr[-4000:])
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"demo generator wrote no manifest for {out_dir}:\n{proc.stdout[-2000:]}")


def _expand(names, all_models):
    core = [n for n, s in all_models.items() if not (s.zoo or s.legacy)]
    zoo = [n for n, s in all_models.items() if s.zoo]
    legacy = [n for n, s in all_models.items() if s.legacy]
    out = []
    for name in names:
        picked = {"core": core, "zoo": zoo, "legacy": legacy,
                  "all": core + zoo + legacy}.get(name)
        if picked is None:
            if name not in all_models:
                raise BadInput(f"unknown demo model {name!r}; expected one of "
                               f"{sorted(all_models)} or core/zoo/legacy/all")
            picked = [name]
        out += [n for n in picked if n not in out]
    if (any(all_models[n].legacy for n in out)
            and os.environ.get("TF_USE_LEGACY_KERAS") != "1"):
        raise BadInput("legacy demo models (rnn_cell, tf_slim) need TF_USE_LEGACY_KERAS=1 "
                       "set before TensorFlow starts; generate() sets it for them")
    return out


def build_all(out_dir, models, variants):
    """In-process build (the subprocess side). Returns {run name: path}."""
    from tb_varmap.demo.tf1_models import MODELS  # imports TF

    written = {}
    os.makedirs(out_dir, exist_ok=True)
    for model in _expand(models, MODELS):
        for variant in variants:
            name = run_name(model, variant)
            final = os.path.join(out_dir, name)
            tmp = os.path.join(out_dir, f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            MODELS[model].build(tmp, variant)
            _fix_state_file(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
            written[name] = os.path.abspath(final)
    return written


def _fix_state_file(model_dir):
    """Saver writes absolute paths into `checkpoint` when given one; make them relative,
    as a model_dir that was moved or committed would need."""
    path = os.path.join(model_dir, "checkpoint")
    if not os.path.exists(path):
        return
    prefix = os.path.abspath(model_dir) + os.sep
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(prefix, ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="logdir to write model dirs into")
    ap.add_argument("--models", default="core", help="comma list of models, or core/zoo/all")
    ap.add_argument("--variant", default="both", help="ref, resource, both (or a comma list)")
    args = ap.parse_args(argv)
    variants = ["ref", "resource"] if args.variant == "both" else args.variant.split(",")
    try:
        bad = [v for v in variants if v not in VARIANT_SUFFIX]
        if bad:
            raise BadInput(f"unknown variant(s) {bad}; expected ref, resource or both")
        written = build_all(args.out, [m for m in args.models.split(",") if m], variants)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"wrote {path}")
    print(_MARK + json.dumps(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
