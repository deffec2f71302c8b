"""The torch reference runs single-threaded, like the onnxruntime and LiteRT runners, and
the caller's thread count is restored afterwards (also when the model raises)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelconv

torch = pytest.importorskip("torch")


class _Seen(torch.nn.Module):
    """Records torch's thread count each time it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.lin(x)


@pytest.fixture
def two_threads() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_verification_runs_the_source_single_threaded(tmp_path: Path,
                                                      two_threads: object) -> None:
    model = _Seen().eval()
    result = modelconv.convert(model, tmp_path / "m.onnx", example_inputs=(torch.randn(1, 4),))
    assert result.verified
    model.seen.clear()
    from modelconv.ir.info import TensorSpec
    from modelconv.verification.runners_torch import TorchRunner

    runner = TorchRunner(model, [TensorSpec("x", "float32", (1, 4))], ["y"])
    (out,) = runner.run([np.ones((1, 4), np.float32)])
    assert model.seen == [1] and out.shape == (1, 4)
    assert torch.get_num_threads() == 2


def test_the_thread_count_is_restored_when_the_model_raises(two_threads: object) -> None:
    from modelconv.ir.info import TensorSpec
    from modelconv.verification.runners_torch import TorchRunner

    def boom(x: torch.Tensor) -> torch.Tensor:
        assert torch.get_num_threads() == 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        TorchRunner(boom, [TensorSpec("x", "float32", (1,))], ["y"]).run([np.ones(1, np.float32)])
    assert torch.get_num_threads() == 2
