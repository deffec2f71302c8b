"""Acceptance models for the ATen coverage of issue 18: torchvision's Swin-T (shifted-window
masks built by slice assignment), a CrossViT-style model (advanced indexing at non-leading
positions) and a weight-standardised-conv model (``F.batch_norm(training=True)`` on the conv
weight, as timm's StdConv2d), each converted to ONNX and TFLite and verified against torch
eager within 1e-4."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import modelconv

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.models

_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


class StdConv2d(nn.Conv2d):
    """Conv2d with its weight standardised per output channel by batch-norm statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class StdConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = StdConv2d(3, 8, 3, 2, 1)
        self.norm = nn.GroupNorm(2, 8)
        self.block = StdConv2d(8, 16, 3, 1, 1, bias=False)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm(self.stem(x)))
        y = F.relu(self.block(y))
        return self.head(y.mean((2, 3)))


class CrossViTish(nn.Module):
    """Two token branches exchanging class tokens, with advanced indexing at non-leading
    positions (``x[:, idx]``, ``x[..., idx, :]``, ``x[idx1, :, idx2]``)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.small = nn.Conv2d(3, dim, 4, 4)
        self.large = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("order", torch.tensor([0, 3, 1, 2, -1]))
        self.register_buffer("rows", torch.tensor([1, 0]))
        self.register_buffer("cols", torch.tensor([2, -3]))
        self.head = nn.Linear(dim * 3 + 2, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.small(x).flatten(2).transpose(1, 2)       # (B, 16, D)
        lg = self.large(x).flatten(2).transpose(1, 2)      # (B, 4, D)
        cls = self.cls.expand(x.shape[0], -1, -1)
        s = torch.cat([cls, s], 1)
        lg = torch.cat([cls, lg], 1)
        picked = s[:, self.order]                          # tokens picked per sample
        q = self.proj(lg[:, :1])
        fused, _ = self.attn(q, picked, picked)
        tokens = lg[..., self.order, :]                    # (B, 5, D)
        mixed = tokens[self.rows, :, self.cols]            # (2, 5): separated index tensors
        feats = torch.cat([fused[:, 0], s[:, 0], tokens.mean(1)], -1)
        return self.head(torch.cat([feats, mixed.sum(-1, keepdim=True).T.expand(
            feats.shape[0], 2)], -1))


class IndexPutNet(nn.Module):
    """Row updates by index_put (ScatterND in the IR): assignment and accumulation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.register_buffer("rows", torch.tensor([3, 0, -2]))
        self.register_buffer("cols", torch.tensor([1, 1, -2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).flatten(2)                        # (B, 4, 256)
        z = y.clone()
        z[:, self.rows] = y[:, :3] * 2
        z = z.index_put((self.cols,), y[0, :1, :] + 1, accumulate=True)
        z[:, torch.tensor([0, 2]), torch.tensor([7, 9])] = 0.5
        return z.sum(-1)


def _swin() -> tuple[nn.Module, tuple[Any, ...]]:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.swin_t(weights=None).eval(), (torch.randn(1, 3, 64, 64),)


def _model(name: str) -> tuple[nn.Module, tuple[Any, ...]]:
    if name == "swin_t":
        return _swin()
    torch.manual_seed(0)
    model = {"stdconv": StdConvNet, "crossvit": CrossViTish, "index_put": IndexPutNet}[name]()
    return model.eval(), (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),)


#: TFLite ops the new lowerings must have produced (not folded away)
EXPECTED_OPS = {"crossvit": {"GATHER_ND"}, "index_put": {"SCATTER_ND", "SELECT_V2"}}
NAMES = ["swin_t", "crossvit", "stdconv", "index_put"]


@pytest.mark.parametrize("name", NAMES)
def test_to_onnx(tmp_path: Path, name: str) -> None:
    model, args = _model(name)
    result = modelconv.convert(model, tmp_path / f"{name}.onnx", example_inputs=args, rtol=1e-4)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4


@pytest.mark.skipif(not _LITERT, reason="needs litert")
@pytest.mark.parametrize("name", NAMES)
def test_to_tflite(tmp_path: Path, name: str) -> None:
    model, args = _model(name)
    out = tmp_path / f"{name}.tflite"
    result = modelconv.convert(model, out, example_inputs=args, rtol=1e-4)
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4
    if name in EXPECTED_OPS:
        from modelconv.exporters.tflite.inspect import inspect_tflite

        assert EXPECTED_OPS[name] <= set(inspect_tflite(out).op_counts)
