"""Verifier core: metrics, tolerance policy, input generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelconv.errors import ShapeError
from modelconv.ir.info import TensorSpec
from modelconv.verification.compare import compare_arrays, tolerance_for
from modelconv.verification.inputs import generate_inputs, load_inputs, resolve_shape


def test_identical_arrays_pass() -> None:
    a = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    m = compare_arrays("y", a, a.copy(), tolerance_for("float32"))
    assert m.passed and m.max_abs == 0 and m.cosine == pytest.approx(1.0)
    assert m.top1_agreement == 1.0


def test_small_error_within_fp32_tolerance_and_large_error_fails() -> None:
    a = np.linspace(-1, 1, 100, dtype=np.float32).reshape(10, 10)
    ok = compare_arrays("y", a, a + 1e-6, tolerance_for("float32"))
    bad = compare_arrays("y", a, a + 1e-2, tolerance_for("float32"))
    assert ok.passed and not bad.passed
    assert bad.max_abs == pytest.approx(1e-2, rel=1e-3)
    assert bad.max_rel == pytest.approx(1e-2, rel=1e-3)
    assert "max abs error" in bad.reason


def test_nan_positions_are_reported() -> None:
    a = np.ones((2, 3), np.float32)
    b = a.copy()
    b[0, 1] = np.nan
    m = compare_arrays("y", a, b, tolerance_for("float32"))
    assert not m.passed and m.nan_mismatch == 1
    same = compare_arrays("y", b, b.copy(), tolerance_for("float32"))
    assert same.passed and same.nan_mismatch == 0


def test_inf_mismatch() -> None:
    a = np.array([1.0, np.inf], np.float32)
    m = compare_arrays("y", a, np.array([1.0, -np.inf], np.float32), tolerance_for("float32"))
    assert not m.passed and m.inf_mismatch == 1


def test_shape_mismatch_fails() -> None:
    m = compare_arrays("y", np.ones((2, 3)), np.ones((3, 3)), tolerance_for("float32"))
    assert not m.passed and "shape" in m.reason


def test_tolerance_by_mode_and_override() -> None:
    assert tolerance_for("float16").rtol > tolerance_for("float32").rtol
    assert tolerance_for("int8").min_cosine == 0.98
    assert tolerance_for("float32", rtol=0.5).rtol == 0.5


def test_integer_outputs_must_match_exactly() -> None:
    tol = tolerance_for("float32")
    assert compare_arrays("i", np.arange(4), np.arange(4), tol).passed
    assert not compare_arrays("i", np.arange(4), np.arange(4)[::-1], tol).passed


def test_generated_inputs_are_seeded_and_ranged() -> None:
    specs = [TensorSpec("x", "float32", ("batch", 3)), TensorSpec("ids", "int64", (None, 7))]
    a = generate_inputs(specs, seed=3, batch_size=2, int_ranges={"ids": (0, 5)})
    b = generate_inputs(specs, seed=3, batch_size=2, int_ranges={"ids": (0, 5)})
    assert a[0].shape == (2, 3) and a[1].shape == (2, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].min() >= 0 and a[1].max() < 5
    c = generate_inputs(specs, seed=4, batch_size=2)
    assert not np.array_equal(a[0], c[0])


def test_dynamic_dims_from_user_values() -> None:
    spec = TensorSpec("x", "float32", ("batch", "seq", 4))
    assert resolve_shape(spec, {"seq": 11}, batch_size=3) == (3, 11, 4)


def test_shape_bomb_is_refused() -> None:
    spec = TensorSpec("x", "float32", ("n", "m"))
    with pytest.raises(ShapeError, match="elements"):
        resolve_shape(spec, {"n": 1 << 20, "m": 1 << 20})


def test_load_inputs_from_npz_and_folder(tmp_path: Path) -> None:
    specs = [TensorSpec("a", "float32", (2,)), TensorSpec("b", "float32", (3,))]
    np.savez(tmp_path / "s1.npz", b=np.ones(3, np.float32), a=np.zeros(2, np.float32))
    np.savez(tmp_path / "s2.npz", b=np.ones(3, np.float32) * 2, a=np.ones(2, np.float32))
    samples = load_inputs(tmp_path, specs)
    assert len(samples) == 2
    assert samples[0][0].shape == (2,) and samples[1][1][0] == 2
    with pytest.raises(ShapeError, match="model's inputs"):
        load_inputs({"zzz": np.ones(2)}, specs)
