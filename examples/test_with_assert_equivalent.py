"""A pytest file for your own project: guard an export step with assert_equivalent.

    python -m pytest examples/test_with_assert_equivalent.py

Both tests build a small model, convert it (or let torch.onnx write it) and let modelconv
prove the file computes the same outputs. The second one shows what a failure looks like.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import modelconv
from modelconv.testing import assert_equivalent


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(),
                               torch.nn.Linear(32, 4)).eval()


def test_tflite_export_matches(tmp_path: Path) -> None:
    net, x = _net(), torch.randn(2, 16)
    modelconv.convert(net, tmp_path / "net.tflite", example_inputs=(x,), verify=False)
    report = assert_equivalent(net, tmp_path / "net.tflite", example_inputs=(x,), rtol=1e-4)
    assert report.passed and not report.skipped


def test_a_wrong_file_fails_with_the_output_named(tmp_path: Path) -> None:
    net, x = _net(), torch.randn(2, 16)
    other = _net()
    with torch.no_grad():
        other[2].bias += 0.5  # a "converted" file from a different model
    torch.onnx.export(other, (x,), str(tmp_path / "other.onnx"), dynamo=False)
    with pytest.raises(AssertionError, match="not equivalent"):
        assert_equivalent(net, tmp_path / "other.onnx", example_inputs=(x,))
