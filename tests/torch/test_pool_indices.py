"""Max pooling's indices output: refused by name (the op, the output, what to do), not a
generic lowering failure; the values alone still convert."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelconv
from modelconv.errors import UnsupportedOpsError

torch = pytest.importorskip("torch")


class _Pool(torch.nn.Module):
    def __init__(self, adaptive: bool, use: str) -> None:
        super().__init__()
        self.pool = (torch.nn.AdaptiveMaxPool2d(2, return_indices=True) if adaptive
                     else torch.nn.MaxPool2d(2, return_indices=True))
        self.use = use

    def forward(self, x: torch.Tensor) -> object:
        values, indices = self.pool(x)
        if self.use == "values":
            return values
        if self.use == "returned":
            return values, indices
        return values + indices.float()


_X = (torch.randn(1, 3, 8, 8),)


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "max_pool"])
@pytest.mark.parametrize("use", ["computed", "returned"])
def test_a_use_of_the_indices_is_refused_by_name(tmp_path: Path, adaptive: bool,
                                                 use: str) -> None:
    with pytest.raises(UnsupportedOpsError) as info:
        modelconv.convert(_Pool(adaptive, use).eval(), tmp_path / "m.onnx", example_inputs=_X)
    message = str(info.value)
    op = "adaptive_max_pool2d" if adaptive else "max_pool2d_with_indices"
    assert op in message and "indices output is not supported" in message, message
    assert "return_indices" in message and "(at pool)" in message, message
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "max_pool"])
def test_the_values_alone_convert(tmp_path: Path, adaptive: bool) -> None:
    result = modelconv.convert(_Pool(adaptive, "values").eval(), tmp_path / "m.onnx",
                               example_inputs=_X)
    assert result.verified, result.report
