"""Registry rules, and a meta-test: every registered handler/pattern has a test case."""

import importlib.util
import pathlib
import sys

import pytest

from tb_varmap.convert import registry

HERE = pathlib.Path(__file__).parent


def _covers():
    covered = set()
    # every test module about the converter declares the ops it covers in COVERS
    for path in sorted(HERE.glob("test_*convert*.py")):
        mod = sys.modules.get(path.stem)
        if mod is None or getattr(mod, "__file__", None) != str(path):
            spec = importlib.util.spec_from_file_location(f"_cov_{path.stem}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        covered |= set(getattr(mod, "COVERS", ()))
    return covered


def test_every_handler_has_a_test_case():
    handlers, patterns = registry.load_handlers()
    covered = _covers()
    missing = sorted((set(handlers) | set(patterns)) - covered)
    assert not missing, f"handlers without a test case: {missing}"
    unknown = sorted(covered - set(handlers) - set(patterns))
    assert not unknown, f"tests claim to cover unregistered ops: {unknown}"


def test_registering_an_op_twice_raises():
    registry.load_handlers()
    with pytest.raises(ValueError, match="MatMul"):
        registry.register("MatMul")(lambda gv, node: None)
    try:
        registry.register("TbVarmapTestOp")(lambda gv, node: None)
        with pytest.raises(ValueError, match="TbVarmapTestOp"):
            registry.register("TbVarmapTestOp")(lambda gv, node: None)
    finally:
        registry.HANDLERS.pop("TbVarmapTestOp", None)


def test_registering_a_pattern_twice_raises():
    registry.load_handlers()
    with pytest.raises(ValueError, match="dropout"):
        registry.register_pattern("dropout")(lambda gv, node: None)


def test_handlers_are_grouped_by_family():
    handlers, patterns = registry.load_handlers()
    assert handlers["Conv2D"].family == "conv"
    assert handlers["MatMul"].family == "dense"
    assert handlers["FusedBatchNormV3"].family == "normalization"
    assert patterns["batchnorm_unfused"].family == "normalization"
    assert {p.name for p in registry.patterns_for("Mul")} == {"batchnorm_unfused",
                                                              "dropout"}
