"""Shared fixtures: TF1 model_dirs generated once per session, copies for tests that write.

- `tf1_models_dir` (session): a read-only logdir with every core demo model, both variants
  (`<model>` = ref variables, `<model>_resource` = resource variables).
- `zoo_models_dir` (session): the one-op zoo models, ref variant only.
- `legacy_models_dir` (session): rnn_cell / tf_slim models ("legacy_*"), both variants,
  generated in a TF_USE_LEGACY_KERAS=1 subprocess.
- `copy_model(name)` (function): copies one model dir to a fresh tmp dir, returns its path.
- `tf1_logdir` (function): a writable copy of the whole `tf1_models_dir`.
- `real_fixtures` (function): a writable copy of <repo>/../shared/fixtures/real (skips if absent).
"""
import os
import shutil
import stat
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tb_varmap.demo.generate import generate  # noqa: E402  (no TF import)

REAL_FIXTURES = os.path.normpath(os.path.join(REPO, "..", "shared", "fixtures", "real"))


def pytest_configure(config):
    # pytest.ini registers these too; repeating keeps the suite valid without it.
    config.addinivalue_line("markers", "slow: heavy cases, run with `pytest -m slow`")


def _writable_copy(src, dst):
    """copytree that leaves the copy writable (the sources may be read-only)."""
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR | stat.S_IRUSR)
    os.chmod(dst, os.stat(dst).st_mode | stat.S_IWUSR)
    return str(dst)


@pytest.fixture(scope="session")
def tf1_models_dir(tmp_path_factory):
    """Every core demo model in both variants, generated once (subprocess). Do not write."""
    out = tmp_path_factory.mktemp("tf1_models")
    generate(str(out), models=["core"], variants=("ref", "resource"))
    return str(out)


@pytest.fixture(scope="session")
def zoo_models_dir(tmp_path_factory):
    """One-op models (conv transpose, depthwise, separable, pad, ...), ref variant only."""
    out = tmp_path_factory.mktemp("zoo_models")
    generate(str(out), models=["zoo"], variants=("ref",))
    return str(out)


@pytest.fixture(scope="session")
def legacy_models_dir(tmp_path_factory):
    """BasicLSTMCell, GRUCell and tf_slim conv/batch_norm/layer_norm models, both variants."""
    out = tmp_path_factory.mktemp("legacy_models")
    generate(str(out), models=["legacy"], variants=("ref", "resource"))
    return str(out)


@pytest.fixture
def copy_model(tf1_models_dir, tmp_path, request):
    """copy_model("cnn_bn_adam_resource") -> path of a fresh writable copy under tmp_path.

    The copy lives in tmp_path/"logdir"/<name>, so its parent works as a logdir too.
    Zoo models ("zoo_*") come from zoo_models_dir, legacy ones from legacy_models_dir.
    """
    def copy(name):
        src_root = tf1_models_dir
        if name.startswith("zoo_"):
            src_root = request.getfixturevalue("zoo_models_dir")
        elif name.startswith("legacy_"):
            src_root = request.getfixturevalue("legacy_models_dir")
        src = os.path.join(src_root, name)
        if not os.path.isdir(src):
            raise LookupError(f"no generated demo model {name!r} in {src_root}; "
                              f"have {sorted(os.listdir(src_root))}")
        return _writable_copy(src, tmp_path / "logdir" / name)

    return copy


@pytest.fixture
def tf1_logdir(tf1_models_dir, tmp_path):
    """A writable copy of the whole generated logdir (all core models, both variants)."""
    return _writable_copy(tf1_models_dir, tmp_path / "tf1_logdir")


@pytest.fixture
def real_fixtures(tmp_path):
    """A writable copy of the real TF1-era artifacts; skips when the shared tree is absent."""
    if not os.path.isdir(REAL_FIXTURES):
        pytest.skip(f"real TF1 fixtures not found at {REAL_FIXTURES}")
    return _writable_copy(REAL_FIXTURES, tmp_path / "real")
