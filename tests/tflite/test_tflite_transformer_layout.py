"""Vision transformers in TFLite carry only the TRANSPOSE ops attention needs.

Per attention block two data movements are unavoidable: the head split (token-major
``[B, N, 3, H, D]`` from the qkv FULLY_CONNECTED to head-major ``[3, B, H, N, D]`` for
BATCH_MATMUL, whose batch dims lead) and the head merge back to ``[B, N, H*D]`` for the output
projection. ``k.transpose(-2, -1)`` is BATCH_MATMUL's ``adj_y``, the patch embedding's NHWC
convolution output is already token-major (``flatten(2).transpose(1, 2)`` moves no data) and
the residual stream, LayerNorm and MLP stay ``[B, N, C]``. So a model with ``depth`` blocks
has at most ``2 * depth`` TRANSPOSE ops that do not touch a graph input or output.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelconv
from modelconv.passes.tflite.layouts import reshape_layout
from tests.tflite_helpers import inner_transposes

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs ai_edge_litert")

nn = torch.nn


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Any) -> Any:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Any) -> Any:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """Patch embedding (a strided conv), class token, position embedding, ``depth`` blocks."""

    def __init__(self, depth: int = 2, dim: int = 32, heads: int = 4, patch: int = 4,
                 side: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, (side // patch) ** 2 + 1, dim) * 0.1)
        self.blocks = nn.Sequential(*[_Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Any) -> Any:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class SplitThenPermute(nn.Module):
    """LeViT's attention: q, k, v split from ``[B, N, H, 2*kd + d]``, then permuted one by one."""

    def __init__(self, dim: int = 24, heads: int = 2, kd: int = 4, d: int = 8) -> None:
        super().__init__()
        self.heads, self.kd, self.d = heads, kd, d
        self.qkv = nn.Linear(dim, heads * (2 * kd + d))
        self.proj = nn.Linear(heads * d, dim)

    def forward(self, x: Any) -> Any:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.heads, -1).split([self.kd, self.kd, self.d], 3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 3, 1), v.permute(0, 2, 1, 3)
        attn = (q @ k * self.kd ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.heads * self.d))


def _convert(model: Any, x: Any, out: Path) -> None:
    result = modelconv.convert(model.eval(), out, example_inputs=(x,), rtol=1e-4, atol=1e-5)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4


def test_tiny_vit_needs_two_transposes_per_block(tmp_path: Path) -> None:
    torch.manual_seed(0)
    depth = 2
    out = tmp_path / "vit.tflite"
    _convert(TinyViT(depth=depth), torch.randn(2, 3, 16, 16), out)
    assert inner_transposes(out) <= 2 * depth


def test_timm_vit_needs_two_transposes_per_block(tmp_path: Path) -> None:
    vision_transformer = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    depth = 2
    model = vision_transformer.VisionTransformer(img_size=32, patch_size=8, embed_dim=32,
                                                 depth=depth, num_heads=2, num_classes=10)
    with torch.no_grad():  # timm zeroes biases at init: make every op carry data
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = tmp_path / "timm_vit.tflite"
    _convert(model, torch.randn(1, 3, 32, 32), out)
    assert inner_transposes(out) <= 2 * depth


@pytest.mark.parametrize("capture", ["fast", "export"])
def test_split_then_permute_shares_one_transpose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capture: str) -> None:
    # both captures record q @ k as one matmul; its bmm form (a decomposed program) costs
    # the same too: tests/tflite/test_tflite_batched_matmul.py
    monkeypatch.setenv("MODELCONV_TORCH_CAPTURE", capture)
    torch.manual_seed(0)
    out = tmp_path / "levit_attention.tflite"
    _convert(SplitThenPermute(), torch.randn(1, 10, 24), out)
    assert inner_transposes(out) <= 2  # one head split for q, k and v; one head merge


def test_decomposed_program_needs_two_transposes_per_block(tmp_path: Path) -> None:
    # a .pt2 after run_decompositions(): matmul as expand + view + bmm, Linear as addmm on
    # flattened tokens, unbind as select (tests/tflite/test_tflite_batched_matmul.py)
    torch.manual_seed(0)
    depth = 1
    model = TinyViT(depth=depth).eval()
    x = torch.randn(2, 3, 16, 16)
    pt2 = tmp_path / "vit.pt2"
    torch.export.save(torch.export.export(model, (x,)).run_decompositions(), pt2)
    out = tmp_path / "vit.tflite"
    result = modelconv.convert(pt2, out, rtol=1e-4, atol=1e-5)
    assert result.verified
    assert inner_transposes(out) <= 2 * depth


def test_linear_on_tokens_is_one_fully_connected(tmp_path: Path) -> None:
    from modelconv.exporters.tflite.inspect import inspect_tflite

    torch.manual_seed(0)
    out = tmp_path / "linear.tflite"
    _convert(nn.Linear(8, 6), torch.randn(2, 5, 8), out)
    assert inspect_tflite(out).op_counts == {"FULLY_CONNECTED": 1}  # the bias inside


def test_layernorm_affine_folds_into_the_next_linear(tmp_path: Path) -> None:
    from modelconv.exporters.tflite.inspect import inspect_tflite

    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 6))
    with torch.no_grad():
        model[0].weight.normal_(1.0, 0.5)
        model[0].bias.normal_(0.0, 0.5)
    out = tmp_path / "ln_linear.tflite"
    _convert(model, torch.randn(2, 5, 8), out)
    counts = inspect_tflite(out).op_counts
    # mean, x - mean, its square, variance, + eps, rsqrt, * rstd; gamma / beta are in the FC
    assert counts == {"MEAN": 2, "SUB": 1, "MUL": 2, "ADD": 1, "RSQRT": 1,
                      "FULLY_CONNECTED": 1}, counts


@pytest.mark.parametrize(("in_shape", "out_shape", "perm", "expected"), [
    ([1, 8, 4, 4], [1, 8, 16], (0, 2, 3, 1), (0, 2, 1)),          # NHWC conv -> tokens
    ([1, 8, 4, 4], [1, 128], (0, 2, 3, 1), None),                 # flatten tears C from HW
    ([1, 8, 1, 1], [1, 8], (0, 2, 3, 1), (0, 1)),                 # only unit dims move
    ([2, 3, 5, 4], [2, 3, 20], (0, 2, 1, 3), None),               # heads merged across N
    ([2, 3, 5, 4], [2, 3, 5, 2, 2], (0, 2, 1, 3), (0, 2, 1, 3, 4)),  # split a trailing dim
    ([1, 1, 3, 7, 4], [1, 3, 7, 4], (0, 3, 1, 2, 4), (0, 2, 1, 3)),  # squeeze keeps the order
])
def test_reshape_layout(in_shape: list[int], out_shape: list[int], perm: tuple[int, ...],
                        expected: tuple[int, ...] | None) -> None:
    got = reshape_layout(in_shape, out_shape, perm)
    assert got == expected
    if got is None:
        return
    x = np.arange(int(np.prod(in_shape))).reshape(in_shape)
    stored = np.transpose(x, perm).reshape([out_shape[a] for a in got])
    np.testing.assert_array_equal(stored, np.transpose(x.reshape(out_shape), got))
