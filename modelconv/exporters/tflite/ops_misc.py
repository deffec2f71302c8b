"""Small compositions: Det of 1x1 / 2x2 / 3x3 matrices (cofactor arithmetic) and MaxUnpool
with non-overlapping windows (SCATTER_ND into zeros)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import cast, value_dtype
from modelconv.exporters.tflite.ops_elementwise import binary
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def check_det(node: ir.Node) -> str | None:
    """Det: float32 square matrices of size 1, 2 or 3 (static)."""
    x = node.inputs[0]
    name = value_dtype(x)
    if name is not None and name != "float32":
        return f"{name} inputs (float32 only)"
    if x is None or x.shape is None or len(x.shape) < 2:
        return None
    n, m = x.shape[-2], x.shape[-1]
    if not isinstance(n, int) or n != m or n > 3:
        return f"matrices of shape {n}x{m} (1x1 to 3x3 only)"
    return None


@tflite_lowering("Det", check=check_det)
def lower_det(ctx: LoweringContext, node: ir.Node) -> None:
    """Det -> the cofactor expansion over the matrix entries (GATHER on the flattened last
    two axes, MUL / ADD / SUB)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    *batch, n, _ = ctx.t(x).shape
    flat = ctx.reshape(x, [*batch, n * n], "entries")
    axis = len(batch)
    cache: dict[tuple[int, int], int] = {}

    def e(i: int, j: int) -> int:
        if (i, j) not in cache:
            opts = s.GatherOptionsT()
            opts.axis = axis
            out = ctx.tmp(f"a{i}{j}", np.float32, list(batch))
            ctx.emit("GATHER", [flat, ctx.i32(i * n + j, "entry")], [out], opts)
            cache[(i, j)] = out
        return cache[(i, j)]

    def op(code: str, a: int, b: int, into: int | None = None) -> int:
        out = ctx.tmp(code.lower(), np.float32, list(batch)) if into is None else into
        binary(ctx, code, a, b, out)
        return out

    def det2(r0: int, r1: int, c0: int, c1: int, into: int | None = None) -> int:
        return op("SUB", op("MUL", e(r0, c0), e(r1, c1)), op("MUL", e(r0, c1), e(r1, c0)),
                  into)

    if n == 1:
        ctx.reshape(e(0, 0), list(ctx.t(dst).shape), dst=dst)
    elif n == 2:
        det2(0, 1, 0, 1, dst)
    else:
        t0 = op("MUL", e(0, 0), det2(1, 2, 1, 2))
        t1 = op("MUL", e(0, 1), det2(1, 2, 0, 2))
        t2 = op("MUL", e(0, 2), det2(1, 2, 0, 1))
        op("ADD", op("SUB", t0, t1), t2, dst)


def _ints(value: object) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else []


def check_max_unpool(node: ir.Node) -> str | None:
    """MaxUnpool: strides >= kernel_shape per axis (windows do not overlap, so the indices
    a MaxPool produced never repeat and scattering into zeros is exact)."""
    kernel = _ints(attr(node, "kernel_shape", []))
    strides = _ints(attr(node, "strides", None)) or [1] * len(kernel)
    if any(st < k for st, k in zip(strides, kernel, strict=False)):
        return f"strides {strides} smaller than kernel_shape {kernel} (overlapping windows)"
    name = value_dtype(node.inputs[0])
    if name is not None and name not in ("float32", "int32", "int64"):
        return f"{name} inputs: no LiteRT SCATTER_ND kernel"
    x, y = node.inputs[0], node.outputs[0]
    if x is not None and x.shape is not None and y.shape is not None:
        inferred = _unpooled_shape(node, list(x.shape))
        if inferred is not None and any(
                not isinstance(o, int) or o < i for o, i in zip(y.shape, inferred, strict=False)):
            return f"output shape {y.shape} smaller than the unpooled shape {inferred}"
    return None


def _unpooled_shape(node: ir.Node, x_shape: list[object]) -> list[int] | None:
    """The reference's inferred output shape (indices address it); None if not static."""
    if not all(isinstance(d, int) for d in x_shape):
        return None
    dims = [int(d) for d in x_shape]  # type: ignore[call-overload]
    kernel = _ints(attr(node, "kernel_shape", []))
    strides = _ints(attr(node, "strides", None)) or [1] * len(kernel)
    pads = _ints(attr(node, "pads", None)) or [0] * (2 * len(kernel))
    r = len(kernel)
    return dims[:2] + [(dims[2 + i] - 1) * strides[i] - pads[i] - pads[r + i] + kernel[i]
                       for i in range(r)]


@tflite_lowering("MaxUnpool", check=check_max_unpool)
def lower_max_unpool(ctx: LoweringContext, node: ir.Node) -> None:
    """MaxUnpool -> SCATTER_ND of X at its flat indices into zeros of the unpooled shape
    (from kernel_shape / strides / pads), then PAD at the end of each axis up to the (static)
    output shape, as the reference does with a larger ``output_shape``."""
    x, idx, dst = ctx.inp(node, 0), ctx.inp(node, 1), ctx.out(node)
    final = list(ctx.t(dst).shape)
    out_shape = _unpooled_shape(node, list(ctx.t(x).shape))
    assert out_shape is not None
    total = int(np.prod(out_shape))
    count = int(np.prod(ctx.t(x).shape))
    flat_idx = ctx.reshape(idx, [count, 1], "flat_indices")
    if ctx.t(flat_idx).dtype != np.int32:
        flat_idx = cast(ctx, flat_idx, np.dtype(np.int32))
    values = ctx.reshape(x, [count], "values")
    scattered = ctx.like(x, "scattered", [total])
    ctx.emit("SCATTER_ND", [flat_idx, values, ctx.i32([total], "size")], [scattered],
             s.ScatterNdOptionsT())
    if out_shape == final:
        ctx.reshape(scattered, out_shape, dst=dst)
        return
    grid = ctx.reshape(scattered, out_shape, "unpooled")
    pads = ctx.i32([[0, f - o] for f, o in zip(final, out_shape, strict=True)], "pads")
    ctx.emit("PAD", [grid, pads], [dst], s.PadOptionsT())
