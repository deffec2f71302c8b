"""ONNX backend node suite through modelconv (see tests/onnx_conformance.py).

The full run is marked ``conformance`` (a separate, required step of .ci/run); the default
suite checks the harness itself and that docs/onnx-conformance.md matches the baseline.
"""

from __future__ import annotations

import pytest

from tests import onnx_conformance as oc


@pytest.mark.conformance
def test_node_suite_has_no_wrong_answer_and_no_regression() -> None:
    baseline = oc.read_baseline()
    assert baseline, "no committed baseline: run python -m tests.onnx_conformance --write"
    results = oc.run_suite()
    problems = oc.regressions(results, baseline)
    counts = oc.totals(results)
    for target in oc.TARGETS:
        was = sum(row[0] == "ok" for row in baseline.get(target, {}).values())
        assert counts[target]["ok"] >= was, f"{target}: ok count fell from {was}"
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:60])


def test_doc_matches_the_baseline() -> None:
    baseline = oc.read_baseline()
    assert baseline, "no committed baseline"
    assert oc.DOC.read_text() == oc.render_doc(oc.from_baseline(baseline))
    for target in oc.TARGETS:
        outcomes = {row[0] for row in baseline[target].values()}
        assert not outcomes & set(oc.FAILING), f"baseline records failing outcomes ({target})"


def test_harness_classifies_ok_refused_and_a_dead_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCONV_CONFORMANCE_ABORT", "test_relu")
    results = {(r.test, r.target): r for r in oc.run_suite(
        workers=1, only=["test_abs", "test_relu", "test_conv_with_strides_padding"])}
    assert results[("test_abs", "onnx")].outcome == "ok"
    assert results[("test_abs", "tflite")].outcome == "ok"
    # a worker that dies is a crash of that case only; the next case runs in a new worker
    assert results[("test_relu", "tflite")].outcome == "crash"
    assert "died" in results[("test_relu", "tflite")].detail
    assert results[("test_conv_with_strides_padding", "onnx")].outcome == "ok"


def test_compare_is_strict_about_values_nan_and_shape() -> None:
    import numpy as np

    a = np.array([1.0, np.nan, np.inf], np.float32)
    assert oc._compare([a], [a.copy()], 1e-3, 1e-7) == ""
    assert "NaN" in oc._compare([a], [np.array([1.0, 2.0, np.inf], np.float32)], 1e-3, 1e-7)
    assert "Inf" in oc._compare([a], [np.array([1.0, np.nan, -np.inf], np.float32)], 1e-3,
                                1e-7)
    assert "max abs" in oc._compare([a], [np.array([1.1, np.nan, np.inf], np.float32)], 1e-3,
                                    1e-7)
    assert "shape" in oc._compare([a], [a[:2]], 1e-3, 1e-7)
    assert "outputs" in oc._compare([a], [a, a], 1e-3, 1e-7)
