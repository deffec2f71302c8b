"""Fused fast-path kernels that torch.jit.trace records (nn.MultiheadAttention and
nn.TransformerEncoderLayer in eval mode under no_grad): their decompositions match the
kernels, and TorchScript archives holding them convert and verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import modelconv  # noqa: E402
from modelconv.importers.torch.fused import (  # noqa: E402
    native_multi_head_attention,
    transformer_encoder_layer_fwd,
)

E, H = 16, 4


def _mha() -> Any:
    torch.manual_seed(0)
    return nn.MultiheadAttention(E, H, batch_first=True).eval()


def _weights(mha: Any) -> tuple[Any, ...]:
    return (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)


@pytest.mark.parametrize("mask_type", [None, 0, 1, 2, "float"])
@pytest.mark.parametrize(("need", "average"), [(False, True), (True, True), (True, False)])
def test_attention_decomposition_matches_kernel(mask_type: Any, need: bool,
                                                average: bool) -> None:
    mha, gen = _mha(), torch.Generator().manual_seed(1)
    q, kv = torch.randn(2, 5, E, generator=gen), torch.randn(2, 5, E, generator=gen)
    masks = {None: None, 0: torch.rand(5, 5, generator=gen) > 0.7,
             1: torch.rand(2, 5, generator=gen) > 0.7,
             2: torch.rand(2, H, 5, 5, generator=gen) > 0.7,
             "float": (torch.rand(5, 5, generator=gen) > 0.7).float() * -3.0}
    kind = 0 if mask_type == "float" else mask_type  # non-zero float entries are masked
    args = (q, kv, kv, E, H, *_weights(mha), masks[mask_type], need, average, kind)
    with torch.no_grad():
        want = torch.ops.aten._native_multi_head_attention.default(*args)
        got = native_multi_head_attention(*args)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
    if need:
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-6)
    else:
        assert got[1] is None and want[1] is None


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_decomposition_matches_kernel(norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, activation=activation,
                                       batch_first=True, norm_first=norm_first).eval()
    a = layer.self_attn
    args = (torch.randn(2, 5, E), E, H, *_weights(a), activation == "gelu", norm_first,
            layer.norm1.eps, layer.norm1.weight, layer.norm1.bias, layer.norm2.weight,
            layer.norm2.bias, layer.linear1.weight, layer.linear1.bias, layer.linear2.weight,
            layer.linear2.bias)
    with torch.no_grad():
        want = torch.ops.aten._transformer_encoder_layer_fwd.default(*args)
        got = transformer_encoder_layer_fwd(*args)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


class _SelfAttention(nn.Module):
    """A ViT-style block: self-attention without weights (takes the fast path)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn, self.norm = _mha(), nn.LayerNorm(E)

    def forward(self, x: Any) -> Any:
        y = self.norm(x)
        return x + self.attn(y, y, y, need_weights=False)[0]


def _encoder() -> Any:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()


@pytest.mark.parametrize(("build", "kernel"), [
    (_SelfAttention, "aten::_native_multi_head_attention"),
    (_encoder, "aten::_transformer_encoder_layer_fwd"),
], ids=["multi_head_attention", "encoder_layer"])
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_torchscript_with_fused_kernel_converts(tmp_path: Path, build: Any, kernel: str,
                                                target: str) -> None:
    if target == "tflite":
        pytest.importorskip("ai_edge_litert")
    model, x = build().eval(), torch.randn(1, 6, E)
    with torch.no_grad():  # eval + no_grad: the eager fast path runs and is recorded
        traced = torch.jit.trace(model, (x,), check_trace=False)
    assert kernel in str(traced.inlined_graph)  # the case under test, not the slow path
    traced.save(str(tmp_path / "ts.pt"))
    result = modelconv.convert(tmp_path / "ts.pt", tmp_path / f"m.{target}", trust_code=True,
                               input_shapes=[(1, 6, E)])
    assert result.verified, result.report
    assert result.report is not None and all(o.passed for o in result.report.outputs)
