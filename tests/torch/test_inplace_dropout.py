"""An in-place dropout in eval (``nn.Dropout(inplace=True)``, here on flatten's view as in
torchvision's EfficientNet head) writes nothing: the program is lowered without
run_decompositions and converts; in training mode it is not treated as a no-op."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelconv

torch = pytest.importorskip("torch")
nn = torch.nn

from modelconv.importers.torch.capture import export_module  # noqa: E402
from modelconv.importers.torch.inplace import writes_nothing  # noqa: E402
from modelconv.importers.torch.lower import needs_decomposition  # noqa: E402


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2, inplace=True)
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


_X = (torch.randn(1, 3, 8, 8),)


def _dropouts(program: object) -> list[object]:
    return [n for n in program.graph.nodes  # type: ignore[attr-defined]
            if n.op == "call_function" and "dropout_" in str(n.target)]


def test_eval_inplace_dropout_needs_no_decomposition(tmp_path: Path) -> None:
    program = export_module(_Head().eval(), _X, None)
    (drop,) = _dropouts(program)
    assert writes_nothing(drop)
    assert not needs_decomposition(program)
    path = tmp_path / "m.pt2"
    torch.export.save(program, str(path))
    assert modelconv.convert(path, tmp_path / "m.onnx").verified


def test_training_mode_dropout_is_not_a_no_op() -> None:
    program = torch.export.export(_Head().train(), _X)
    (drop,) = _dropouts(program)
    assert not writes_nothing(drop)
    assert needs_decomposition(program)
