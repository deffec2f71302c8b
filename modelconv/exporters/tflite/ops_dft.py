"""DFT as constant matrices along the transformed axis (BATCH_MATMUL).

Every DFT variant (forward / inverse, full / one-sided, real or complex input, a
``dft_length`` that pads or truncates) is linear in the input's real and imaginary parts:
``out = P @ re + Q @ im`` with complex [m, n] matrices P = T(I), Q = T(i I), obtained by
applying the transform T to the identity (numpy's FFT, when converting). The output's real
and imaginary parts are then four real BATCH_MATMULs on the input viewed as
[before, n, after]. A run-time ``axis`` (opset 20) is read from the static output shape when
one axis fits it, else every fitting axis is computed and the asked one selected.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from ai_edge_litert import schema_py_generated as s

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.exporters.tflite.kernels import value_dtype
from modelconv.exporters.tflite.operands import runtime_int32
from modelconv.exporters.tflite.registry import attr, tflite_lowering


def _shapes(node: ir.Node) -> tuple[list[int], list[int]] | None:
    x, y = node.inputs[0], node.outputs[0]
    if x is None or x.shape is None or y.shape is None:
        return None
    if not all(isinstance(d, int) for d in (*x.shape, *y.shape)):
        return None
    return [int(d) for d in x.shape], [int(d) for d in y.shape]  # type: ignore[arg-type]


def _length(node: ir.Node, n: int, out: int) -> int | None:
    """The dft_length: constant, defaulted, or implied by the output length."""
    inverse, onesided = bool(attr(node, "inverse", 0)), bool(attr(node, "onesided", 0))
    v = node.inputs[1] if len(node.inputs) > 1 else None
    if v is not None and v.const_value is not None:
        return int(np.asarray(v.const_value.numpy()).reshape(-1)[0])
    if v is None:
        return 2 * (n - 1) if inverse and onesided else n
    return None if onesided and not inverse else out


def _axes(node: ir.Node, ins: list[int], outs: list[int]) -> list[int]:
    """The axes the transform may run along (constant axis: that one)."""
    rank = len(ins)
    v = node.inputs[2] if len(node.inputs) > 2 else None
    if v is not None and v.const_value is not None:
        return [int(np.asarray(v.const_value.numpy()).reshape(-1)[0]) % rank]
    if v is None:
        default = -2 if node.version is None or node.version >= 20 else 1
        return [int(attr(node, "axis", default)) % rank]  # type: ignore[call-overload]
    fits = []
    for a in range(rank - 1):
        if all(ins[i] == outs[i] for i in range(rank - 1) if i != a) and (
                _length(node, ins[a], outs[a]) is not None):
            fits.append(a)
    return fits


def check_dft(node: ir.Node) -> str | None:
    """Static shapes, float32, a known length; the axis not the complex one."""
    shapes = _shapes(node)
    if shapes is None:
        return "non-static shapes"
    if value_dtype(node.inputs[0]) not in (None, "float32"):
        return f"{value_dtype(node.inputs[0])} input (float32 only)"
    ins, outs = shapes
    axes = _axes(node, ins, outs)
    if not axes or any(a == len(ins) - 1 for a in axes):
        return "axis: none fits the output shape"
    if any(_length(node, ins[a], outs[a]) is None for a in axes):
        return "run-time dft_length with onesided=1"
    return None


def _matrices(node: ir.Node, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """P, Q: the transform of the real and of the imaginary unit inputs, [m, n] each."""
    inverse, onesided = bool(attr(node, "inverse", 0)), bool(attr(node, "onesided", 0))
    eye = np.eye(n, dtype=np.complex128)

    def transform(z: np.ndarray) -> np.ndarray:
        if inverse and onesided:
            return np.fft.irfft(z, n=length, axis=0).astype(np.complex128)
        if inverse:
            return np.fft.ifft(z, n=length, axis=0)
        full = np.fft.fft(z, n=length, axis=0)
        return full[: length // 2 + 1] if onesided else full

    return transform(eye), transform(1j * eye)


def _along(ctx: LoweringContext, node: ir.Node, x: int, axis: int, out_shape: list[int]) -> int:
    """The transform of ``x`` along ``axis``, shaped ``out_shape``."""
    ins = ctx.t(x).shape
    n, before = ins[axis], int(np.prod(ins[:axis]))
    after = int(np.prod(ins[axis + 1:-1]))
    length = _length(node, n, out_shape[axis])
    assert length is not None
    p, q = _matrices(node, n, length)
    m = p.shape[0]
    parts = []
    if ins[-1] == 2:
        split = [ctx.like(x, f"dft{axis}_{w}", [*ins[:-1], 1]) for w in ("re", "im")]
        so = s.SplitOptionsT()
        so.numSplits = 2
        ctx.emit("SPLIT", [ctx.i32(len(ins) - 1, "axis"), x], split, so)
        parts = [ctx.reshape(t, [before, n, after], f"dft{axis}_in") for t in split]
    else:
        parts = [ctx.reshape(x, [before, n, after], f"dft{axis}_in")]
    outs = []
    for comp in ("real", "imag"):
        if out_shape[-1] == 1 and comp == "imag":
            break
        acc = -1
        for mat, src in zip((p, q), parts, strict=False):
            w = getattr(mat, comp).astype(np.float32)[None]
            y = ctx.tmp(f"dft{axis}_{comp}", np.float32, [before, m, after])
            ctx.emit("BATCH_MATMUL", [ctx.const(w, f"dft_{comp}"), src], [y],
                     s.BatchMatMulOptionsT())
            if acc >= 0:
                total = ctx.like(y, f"dft{axis}_{comp}_sum")
                ctx.emit("ADD", [acc, y], [total], s.AddOptionsT())
                y = total
            acc = y
        outs.append(ctx.reshape(acc, [before, m, after, 1], f"dft{axis}_{comp}4"))
    if len(outs) == 1:
        return ctx.reshape(outs[0], out_shape, f"dft{axis}_out")
    both = ctx.tmp(f"dft{axis}_both", np.float32, [before, m, after, 2])
    co = s.ConcatenationOptionsT()
    co.axis = 3
    ctx.emit("CONCATENATION", outs, [both], co)
    return ctx.reshape(both, out_shape, f"dft{axis}_out")


@tflite_lowering("DFT", check=check_dft)
def lower_dft(ctx: LoweringContext, node: ir.Node) -> None:
    """DFT -> BATCH_MATMUL with constant transform matrices (see the module docstring)."""
    x, dst = ctx.inp(node, 0), ctx.out(node)
    ins, outs = list(ctx.t(x).shape), list(ctx.t(dst).shape)
    axes = _axes(node, ins, outs)
    y = _along(ctx, node, x, axes[0], outs)
    if len(axes) > 1:
        asked = ctx.tmp("axis", np.int32, [])
        ctx.emit("FLOOR_MOD", [runtime_int32(ctx, node.inputs[2], "axis", []),  # type: ignore
                               ctx.const(np.asarray(len(ins), np.int32), "rank")], [asked])
        for a in axes[1:]:
            pick = ctx.tmp(f"is_axis{a}", np.bool_, [])
            ctx.emit("EQUAL", [asked, ctx.const(np.asarray(a, np.int32), f"axis{a}")], [pick])
            chosen = ctx.like(y, f"dft_axis{a}")
            ctx.emit("SELECT_V2", [pick, _along(ctx, node, x, a, outs), y], [chosen])
            y = chosen
    ctx.reshape(y, outs, dst=dst)
