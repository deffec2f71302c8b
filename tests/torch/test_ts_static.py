"""The TorchScript route's converter sorts the module's state by identity: parameters are
the module's parameters (tied ones once per name), everything else is a buffer, even a
buffer whose values equal a parameter's (fresh BatchNorm: running_var == weight == 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelconv

torch = pytest.importorskip("torch")


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4)
        self.b.weight = self.a.weight  # tied
        self.bn = torch.nn.BatchNorm1d(4)  # fresh: running stats equal weight / bias
        self.register_buffer("offset", torch.ones(4))  # equal to bn.weight, still a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.b(self.a(x))) + self.offset


def test_state_is_split_by_identity_not_by_value() -> None:
    from modelconv.importers.torch.ts_static import split_state

    module = torch.jit.trace(_Net().eval(), (torch.randn(2, 4),))
    params, buffers = split_state(module)
    assert sorted(params) == ["a.bias", "a.weight", "b.bias", "b.weight", "bn.bias",
                              "bn.weight"]
    assert sorted(buffers) == ["bn.num_batches_tracked", "bn.running_mean",
                               "bn.running_var", "offset"]


def test_a_fresh_batchnorm_torchscript_converts(tmp_path: Path) -> None:
    path = tmp_path / "ts.pt"
    torch.jit.trace(_Net().eval(), (torch.randn(1, 4),)).save(str(path))
    for target in ("onnx", "tflite"):
        if target == "tflite":
            pytest.importorskip("ai_edge_litert")
        result = modelconv.convert(path, tmp_path / f"m.{target}", trust_code=True,
                                   input_shapes=[(1, 4)])
        assert result.verified, result.report
