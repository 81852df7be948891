"""The tag file's schema, merging, atomic writes and its fuzzing."""

import json
import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tb_varmap import tags as tags_mod
from tb_varmap.errors import BadInput


def test_empty_run_has_revision_zero(tmp_path):
    assert tags_mod.load_tags(str(tmp_path)) == tags_mod.empty_tags()


@pytest.mark.parametrize(
    "body, expected",
    [
        ([], "expected a JSON object"),
        ({"format_version": 2}, "format_version 2"),
        ({"revision": -1}, "revision"),
        ({"base_revision": "3"}, "base_revision"),
        ({"step": "latest"}, "step"),
        ({"inputs": "x"}, "inputs"),
        ({"outputs": [""]}, "outputs"),
        ({"weights": "shadow"}, "weights"),
        ({"variables": []}, "variables must be an object"),
        ({"variables": {"w": {"role": 3}}}, "'w'"),
        ({"variables": {"w": {"role": "dense.kernel", "colour": "red"}}}, "colour"),
        ({"variables": {"w": {"role": "dense.kernel", "trainable": "yes"}}}, "trainable"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_schema_errors_name_the_field(body, expected):
    with pytest.raises(BadInput) as error:
        tags_mod.check_schema(body, where="test")
    assert expected in str(error.value)


def test_merge_update_keeps_unmentioned_fields_and_removes_nulls():
    stored = tags_mod.empty_tags()
    stored["variables"] = {"a": {"role": "dense.kernel"}, "b": {"role": "dense.bias"}}
    stored["inputs"] = ["x"]
    merged = tags_mod.merge_update(stored, {"variables": {"a": None, "c": {"role": "constant"}}})
    assert merged["variables"] == {"b": {"role": "dense.bias"}, "c": {"role": "constant"}}
    assert merged["inputs"] == ["x"]
    assert stored["variables"]["a"] == {"role": "dense.kernel"}  # not mutated


def test_malformed_tag_file_is_a_clear_error(tmp_path):
    path = tmp_path / "varmap" / "tags.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(BadInput, match="tags.json is not valid JSON"):
        tags_mod.load_tags(str(tmp_path))
    path.write_text(" " * (tags_mod.MAX_TAGS_BYTES + 1))
    with pytest.raises(BadInput, match="bytes; at most"):
        tags_mod.load_tags(str(tmp_path))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = str(tmp_path / "out" / "data.json")
    tags_mod.write_json_atomic(path, {"a": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        tags_mod.write_json_atomic(path, {"a": Boom()})
    assert json.load(open(path)) == {"a": 1}
    assert os.listdir(os.path.dirname(path)) == ["data.json"]  # the temp file is gone


def test_concurrent_writers_never_tear_the_file(tmp_path):
    path = str(tmp_path / "data.json")
    errors = []

    def writer(n):
        try:
            for i in range(30):
                tags_mod.write_json_atomic(path, {"writer": n, "i": i, "pad": "x" * 5000})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        if os.path.exists(path):
            assert json.load(open(path))["pad"] == "x" * 5000
    for t in threads:
        t.join()
    assert not errors


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
tag_like = st.fixed_dictionaries(
    {},
    optional={
        "format_version": st.one_of(st.just(1), json_values),
        "base_revision": st.one_of(st.integers(-2, 5), json_values),
        "step": st.one_of(st.none(), st.integers(), json_values),
        "inputs": st.one_of(st.none(), st.lists(st.text(max_size=5)), json_values),
        "weights": st.sampled_from(["raw", "ema", "x", None]),
        "variables": st.one_of(
            st.dictionaries(
                st.text(max_size=6),
                st.one_of(st.none(), st.fixed_dictionaries({"role": st.one_of(st.text(max_size=6), json_values)},
                                                          optional={"trainable": json_values, "layer": json_values})),
                max_size=3,
            ),
            json_values,
        ),
    },
)


@settings(max_examples=int(os.environ.get("TB_VARMAP_FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(tag_like, json_values))
def test_fuzz_schema_accepts_or_raises_bad_input(body):
    try:
        tags = tags_mod.check_schema(body, where="fuzz")
    except BadInput as e:
        assert str(e).startswith("fuzz")
        return
    json.dumps(tags)  # whatever is accepted is storable
    assert tags["format_version"] == 1
