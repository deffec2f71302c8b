"""Linear layers and matrix products."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from ._base import AtenBuilder, aten_op


def _scaled(b: AtenBuilder, x: ir.Value, factor: float) -> ir.Value:
    return x if factor == 1 else b.Mul(x, b.scalar(factor, b.out_dtype()))


@aten_op("aten.linear.default")
def linear(b: AtenBuilder, x: ir.Value, weight: ir.Value,
           bias: ir.Value | None = None) -> ir.Value:
    """Gemm for 2-D inputs, else MatMul with the transposed weight (+ Add)."""
    if b.rank(x) == 2 and b.rank(weight) == 2:
        return b.op("Gemm", [x, weight] if bias is None else [x, weight, bias], transB=1)
    y = b.MatMul(x, b.Transpose(weight, perm=[1, 0]))
    return y if bias is None else b.Add(y, bias)


@aten_op("aten.addmm.default")
def addmm(b: AtenBuilder, bias: ir.Value, mat1: ir.Value, mat2: ir.Value,
          beta: float = 1, alpha: float = 1) -> ir.Value:
    """Gemm(mat1, mat2, bias)."""
    return b.Gemm(mat1, mat2, bias, alpha=float(alpha), beta=float(beta))


@aten_op("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def matmul(b: AtenBuilder, x: ir.Value, other: ir.Value) -> ir.Value:
    """MatMul (numpy semantics, as torch.matmul)."""
    return b.MatMul(x, other)


@aten_op("aten.baddbmm.default")
def baddbmm(b: AtenBuilder, bias: ir.Value, batch1: ir.Value, batch2: ir.Value,
            beta: float = 1, alpha: float = 1) -> ir.Value:
    """beta * bias + alpha * (batch1 @ batch2)."""
    prod = _scaled(b, b.MatMul(batch1, batch2), alpha)
    if beta == 0:
        return prod
    return b.Add(_scaled(b, bias, beta), prod)


@aten_op("aten.einsum.default")
def einsum(b: AtenBuilder, equation: str, tensors: Sequence[ir.Value],
           path: Sequence[int] | None = None) -> ir.Value:
    """Einsum."""
    return b.op("Einsum", list(tensors), equation=equation.replace(" ", ""))
