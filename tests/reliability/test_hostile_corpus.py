"""Every hostile input gives its ModelconvError subclass, a clear one-paragraph message, a
non-zero exit code, no output file and no side effect."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from modelconv.cli import main
from tests.hostile.corpus import CASES as BASE_CASES
from tests.hostile.corpus import MARKER, Case
from tests.hostile.pt2 import PT2_CASES

CASES = BASE_CASES + PT2_CASES


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for module in case.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module}")
    args = case.build(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0, f"{case.name}: expected failure, got exit 0"
    assert f"error ({case.error})" in err, err
    assert "Traceback" not in err and len(err.strip()) > 20
    assert not (tmp_path / MARKER).exists(), "the payload ran"
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before, f"files changed: {set(after) ^ set(before)}"


def test_nan_and_inf_weights_convert_and_are_reported(tmp_path: Path) -> None:
    """Non-finite weights are not an attack on the converter: the file is written, but an
    output without any finite value is no evidence of equivalence: verification fails
    (exit 1), saying why, and the file stays for inspection."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    import modelconv
    from tests.hostile.corpus import CNN

    model = onnx.load(str(CNN))
    for init in model.graph.initializer:
        if init.name == "fc_b":
            arr = numpy_helper.to_array(init).copy()
            arr[0], arr[1] = np.nan, np.inf
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    src = tmp_path / "nan.onnx"
    onnx.save(model, src)
    from modelconv.errors import VerificationError

    with pytest.raises(VerificationError, match="no finite value") as info:
        modelconv.convert(src, tmp_path / "out.onnx")
    report = info.value.report
    assert report is not None and not report.passed
    assert any("NaN/Inf" in note for note in report.notes)
    assert (tmp_path / "out.onnx").exists()
