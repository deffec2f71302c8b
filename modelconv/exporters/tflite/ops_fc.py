"""Matrix products: Gemm / MatMul -> FULLY_CONNECTED (constant weights) or BATCH_MATMUL."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import dtype_reason, emit_typed, value_dtype
from modelconv.exporters.tflite.operands import RuntimeWeight
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def fully_connected(ctx: LoweringContext, x: int, weight: np.ndarray | RuntimeWeight,
                    bias: np.ndarray | RuntimeWeight | None, y: int, act: int = 0,
                    keep_dims: bool = False) -> None:
    """FULLY_CONNECTED with ``weight`` [out, in] (a constant, or a run-time tensor, which
    the kernel reads at every invocation)."""
    opts = s.FullyConnectedOptionsT()
    opts.fusedActivationFunction = act
    opts.keepNumDims = keep_dims
    w = weight.t if isinstance(weight, RuntimeWeight) else ctx.const(
        weight if weight.dtype == np.float32 else weight.astype(np.float32), "weight")
    b = -1 if bias is None else bias.t if isinstance(bias, RuntimeWeight) else ctx.const(
        bias.astype(np.float32), "bias")
    ctx.emit("FULLY_CONNECTED", [x, w, b], [y], opts)


def check_matmul(node: ir.Node) -> str | None:
    """FULLY_CONNECTED / BATCH_MATMUL compute on float32 only (int8/int16 quantized)."""
    return dtype_reason("BATCH_MATMUL", *node.inputs[:2])


def check_gemm(node: ir.Node) -> str | None:
    """Gemm is lowered on float32 only (FULLY_CONNECTED / BATCH_MATMUL + MUL + ADD)."""
    name = value_dtype(node.inputs[0])
    return None if name in (None, "float32") else f"{name} inputs"


@tflite_lowering("Gemm", check=check_gemm)
def lower_gemm(ctx: LoweringContext, node: ir.Node) -> None:
    """Gemm: alpha * A' B' + beta * C."""
    a = {k: v.value for k, v in node.attributes.items()}
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    x = ctx.inp(node, 0)
    if a.get("transA", 0):
        x = ctx.transpose(x, [1, 0], "a_t")
    w = ctx.array(node.inputs[1])
    c = ctx.array(node.inputs[2]) if len(node.inputs) > 2 else None
    dst = ctx.out(node)
    n_out = ctx.t(dst).shape[1]
    if w is not None and (c is None or c.size in (1, n_out)):
        weight = w if a.get("transB", 0) else w.T
        weight = weight if alpha == 1.0 else weight * np.float32(alpha)
        bias = None if c is None else np.broadcast_to(c.reshape(-1) * beta, (n_out,))
        fully_connected(ctx, x, weight, bias, dst, ctx.activation(node))
        return
    _general_gemm(ctx, node, x, bool(a.get("transB", 0)), alpha, beta, dst)


def _scaled(ctx: LoweringContext, t: int, factor: float, name: str) -> int:
    """``t * factor`` (no op for 1)."""
    if factor == 1.0:
        return t
    out = ctx.like(t, name)
    ctx.emit("MUL", [t, ctx.const(np.float32(factor), name)], [out], s.MulOptionsT())
    return out


def _general_gemm(ctx: LoweringContext, node: ir.Node, x: int, trans_b: bool, alpha: float,
                  beta: float, dst: int) -> None:
    """Gemm with a run-time B or a full C: BATCH_MATMUL, MUL, ADD, then the activation."""
    y = ctx.like(dst, "matmul")
    opts = s.BatchMatMulOptionsT()
    opts.adjY = trans_b
    ctx.emit("BATCH_MATMUL", [x, ctx.inp(node, 1)], [y], opts)
    y = _scaled(ctx, y, alpha, "alpha")
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        biased = ctx.like(dst, "biased")
        ctx.emit("ADD", [y, _scaled(ctx, ctx.inp(node, 2), beta, "beta")], [biased],
                 s.AddOptionsT())
        y = biased
    ctx.apply_activation(node, y, dst)


@tflite_lowering("MatMul", check=check_matmul)
def lower_matmul(ctx: LoweringContext, node: ir.Node) -> None:
    """MatMul: constant 2-D right operand -> FULLY_CONNECTED(keep_num_dims), else BATCH_MATMUL.

    1-D operands (numpy semantics: [K] is a row on the left, a column on the right) are
    reshaped to rank 2 first and the result reshaped back: the kernels need rank >= 2.
    The layout pass's ``modelconv.nhwc`` MatMul has operands stored with their last two dims
    swapped where ``adj_x`` / ``adj_y`` is 1: BATCH_MATMUL's options of those names; a third
    input is the bias of a constant weight (FULLY_CONNECTED's, see FuseMatMulBiasPass)."""
    adj_x, adj_y = bool(attr(node, "adj_x", 0)), bool(attr(node, "adj_y", 0))
    x, dst = ctx.inp(node, 0), ctx.out(node)
    w = ctx.array(node.inputs[1])
    fc = w is not None and w.ndim == 2 and w.dtype == np.float32 and \
        ctx.t(x).dtype == np.float32
    b = -1 if fc else ctx.inp(node, 1)
    x_shape = ctx.t(x).shape
    if len(x_shape) == 1:
        x = ctx.reshape(x, [1, x_shape[0]], "as_row")
    if b >= 0 and len(ctx.t(b).shape) == 1:
        b = ctx.reshape(b, [ctx.t(b).shape[0], 1], "as_column")
    xs = ctx.t(x).shape
    if b >= 0 or w is None:
        bs = ctx.t(b).shape
        batch = list(np.broadcast_shapes(tuple(xs[:-2]), tuple(bs[:-2])))
        out_shape = [*batch, xs[-1] if adj_x else xs[-2], bs[-2] if adj_y else bs[-1]]
    else:
        out_shape = [*xs[:-1], int(w.shape[1])]
    y = dst if out_shape == ctx.t(dst).shape else ctx.like(dst, "matmul2d", out_shape)
    if b < 0:
        assert w is not None
        bias = ctx.array(node.inputs[2]) if len(node.inputs) > 2 else None
        fully_connected(ctx, x, w.T, bias, y, keep_dims=True)
    else:
        opts = s.BatchMatMulOptionsT()
        opts.adjX, opts.adjY = adj_x, adj_y
        emit_typed(ctx, "BATCH_MATMUL", [x, b], y, opts)
    if y != dst:
        ctx.reshape(y, ctx.t(dst).shape, dst=dst)
