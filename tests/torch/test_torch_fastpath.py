"""The fast torch route: programs lowered without run_decompositions when every op has a
handler (in-place ops only where lowering them functionally is invisible), the handlers
that route needs, and the ONNX writer that splices weights into the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import onnx_ir as ir  # noqa: E402

from modelconv.exporters.onnx import write_embedded  # noqa: E402
from modelconv.importers.torch.capture import export_module  # noqa: E402
from modelconv.importers.torch.lower import needs_decomposition  # noqa: E402
from tests.torch.test_torch_ops import Fn, run_both  # noqa: E402


def _program(fn: Callable[..., Any], *args: Any) -> Any:
    return export_module(Fn(fn), tuple(args), None)


def _close(module: nn.Module, *inputs: Any, tol: float = 1e-5) -> None:
    got, ref = run_both(module, list(inputs))
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=tol)


def _inplace_then_read(x: Any) -> Any:
    y = x * 2
    z = y + 1  # reads y before the mutation: still safe
    y.relu_()
    return y + z


def _view_read_after(x: Any) -> Any:
    y = x * 2
    v = y.view(-1)  # a view taken before the mutation sees it
    y.add_(1)
    return v.sum() + y


def _mutate_input(x: Any) -> Any:
    x.add_(1)
    return x * 2


X = torch.randn(2, 3, 4)


def test_safe_inplace_skips_decomposition() -> None:
    assert not needs_decomposition(_program(_inplace_then_read, X))
    _close(Fn(_inplace_then_read), X)


def test_resnet_style_block_skips_decomposition() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                          nn.Flatten())
    ep = export_module(block.eval(), (torch.randn(1, 3, 8, 8),), None)
    assert not needs_decomposition(ep)
    _close(block, torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("fn", [_view_read_after, _mutate_input])
def test_observable_mutation_is_decomposed(fn: Callable[..., Any]) -> None:
    assert needs_decomposition(_program(fn, X.clone()))


def test_view_read_after_mutation_stays_correct() -> None:
    _close(Fn(_view_read_after), X, tol=1e-4)


@pytest.mark.parametrize("fn", [
    lambda x: torch.flatten(x, 1, 2),
    lambda x: x.unflatten(2, (2, -1)),
    lambda x: torch.diff(x, dim=1),
    lambda x: torch.diff(x, n=2, dim=-1, prepend=x[..., :1], append=x[..., -1:]),
    lambda x: ((x > 0) & (x < 1)).float(),
    lambda x: x.to(device="cpu", dtype=torch.float64) * 2,
    lambda x: torch.ones(4).to(x) + x,
    lambda x: nn.functional.conv1d(x, torch.ones(2, 3, 2)),
], ids=["flatten", "unflatten", "diff", "diff_n2_pre_app", "and", "to_device",
        "to_other", "conv1d"])
def test_undecomposed_ops(fn: Callable[..., Any]) -> None:
    assert not needs_decomposition(_program(fn, X))
    _close(Fn(fn), X)


class _Flatten(nn.Module):
    def forward(self, x: Any) -> Any:
        return torch.flatten(x, 1) * 2


def test_dynamic_flatten() -> None:
    got, ref = run_both(_Flatten(), [torch.randn(3, 2, 5)], dynamic_batch=True)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-6)


def test_write_embedded_matches_ir_save(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = ir.tensor(rng.standard_normal((300, 100)).astype(np.float32), name="big")
    small = ir.tensor(np.arange(6, dtype=np.int64), name="small")
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([2, 300]))
    w = ir.Value(name="big", const_value=big, type=ir.TensorType(ir.DataType.FLOAT),
                 shape=ir.Shape([300, 100]))
    s = ir.Value(name="small", const_value=small, type=ir.TensorType(ir.DataType.INT64),
                 shape=ir.Shape([6]))
    mm = ir.node("MatMul", [x, w])
    shape = ir.node("Shape", [s])
    graph = ir.Graph([x], [*mm.outputs, *shape.outputs], nodes=[mm, shape],
                     initializers=[w, s], opset_imports={"": 21}, name="g")
    graph.doc_string = "after the initializers"
    model = ir.Model(graph, ir_version=10, producer_name="test")
    model.metadata_props["k"] = "v"
    ir.save(model, tmp_path / "a.onnx")
    write_embedded(model, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
