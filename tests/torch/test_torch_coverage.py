"""The core ATen op set (ops tagged torch.Tag.core) against the torch importer: every op is
lowered by a handler, decomposed by torch.export, or refused with a reason; none missing."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from modelconv.errors import UnsupportedOpsError  # noqa: E402
from modelconv.importers.torch import import_torch_module  # noqa: E402
from modelconv.importers.torch.aten import ATEN_OPS  # noqa: E402
from modelconv.importers.torch.coverage import (  # noqa: E402
    REFUSED,
    core_aten_coverage,
    core_aten_ops,
    coverage_markdown,
)
from modelconv.options import ConvertOptions  # noqa: E402


def test_core_set_read_from_torch() -> None:
    names = {str(op) for op in core_aten_ops()}
    assert len(names) > 150
    assert {"aten.convolution.default", "aten.slice_scatter.default",
            "aten.index_put.default", "aten._native_batch_norm_legit.no_stats"} <= names


def test_no_core_op_missing() -> None:
    rows = core_aten_coverage()
    missing = [r.op for r in rows if r.status == "missing"]
    assert not missing, f"core ATen ops with no handler, decomposition or reason: {missing}"
    statuses = {r.op: r.status for r in rows}
    for op in ("aten.slice_scatter.default", "aten.copy.default", "aten.index_put.default",
               "aten.index.Tensor", "aten._native_batch_norm_legit.no_stats",
               "aten.scatter_reduce.two", "aten.atan2.default"):
        assert statuses[op] == "handler", op


def test_refusals_are_core_ops_without_handler() -> None:
    core = {str(op) for op in core_aten_ops()}
    for key, reason in REFUSED.items():
        assert key in core, key
        assert key not in ATEN_OPS, key
        assert reason


def test_refused_op_reports_its_reason() -> None:
    class Nonzero(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nonzero(x > 0)

    with pytest.raises(UnsupportedOpsError) as info:
        import_torch_module(Nonzero(), ConvertOptions(example_inputs=(torch.randn(3, 4),)))
    assert "aten.nonzero.default (data-dependent output size)" in str(info.value)


def test_bool_mask_index_refused_with_reason() -> None:
    class Masked(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[x > 0]

    with pytest.raises(UnsupportedOpsError) as info:
        import_torch_module(Masked(), ConvertOptions(example_inputs=(torch.randn(3, 4),)))
    assert "bool mask index" in str(info.value)


def test_table_lists_every_core_op() -> None:
    text = coverage_markdown()
    for op in core_aten_ops():
        assert f"| `{op}` |" in text
