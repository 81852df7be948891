"""Property-based fuzzing of the graph readers with mutated GraphDefs and event files.

Every input either reads or is rejected with a clean tb_varmap error; nothing else escapes.
CI runs a few hundred cases; the dedicated run is
`TB_VARMAP_FUZZ_EXAMPLES=10000 python -m pytest tests/test_fuzz_readers.py tests/test_tags.py`.
"""

import glob
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_varmap import run as run_mod
from tb_varmap.errors import VarMapError

EXAMPLES = int(os.environ.get("TB_VARMAP_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 1000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def seeds(tf1_models_dir):
    """A real GraphDef (bytes) and a real event file written by TensorFlow."""
    model = os.path.join(tf1_models_dir, "cnn_bn_adam")
    events = sorted(glob.glob(os.path.join(model, "events.out.tfevents.*")))[0]
    data = run_mod.RunData(tf1_models_dir, "cnn_bn_adam")
    return Seeds(data.graph_def.SerializeToString(), open(events, "rb").read())


class Seeds(tuple):
    def __new__(cls, *items):
        return super().__new__(cls, items)

    def __repr__(self):  # keeps hypothesis' failure reports readable
        return "Seeds(graph_def: %d bytes, event file: %d bytes)" % tuple(map(len, self))


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]), st.integers(0, 10**9), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=4,
)


def mutate(data, ops):
    data = bytearray(data)
    for kind, position, blob in ops:
        if not data:
            break
        at = position % len(data)
        if kind == "flip":
            data[at] ^= blob[0] or 1
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = blob
        else:
            del data[at:at + len(blob)]
    return bytes(data)


def read_everything(logdir, run):
    """What the routes do with a run; returns normally or raises VarMapError."""
    try:
        data = run_mod.RunData(logdir, run)
        if data.graph_def is None:
            return
        data.graph_json()
        data.variables()
        data.roles()
        data.default_io()
    except VarMapError:
        pass


def fresh_run(tmp_path_factory, name, content):
    logdir = tmp_path_factory.mktemp("fuzz")
    run_dir = logdir / "run"
    run_dir.mkdir()
    (run_dir / name).write_bytes(content)
    return str(logdir)


@FUZZ
@given(ops=mutations)
def test_mutated_graph_pb(seeds, tmp_path_factory, ops):
    logdir = fresh_run(tmp_path_factory, "graph.pb", mutate(seeds[0], ops))
    read_everything(logdir, "run")
    shutil.rmtree(logdir)


@FUZZ
@given(ops=mutations)
def test_mutated_event_file(seeds, tmp_path_factory, ops):
    logdir = fresh_run(tmp_path_factory, "events.out.tfevents.1.fuzz", mutate(seeds[1], ops))
    read_everything(logdir, "run")
    shutil.rmtree(logdir)
