"""What LiteRT's builtin kernels accept: tensor dtypes computed without quantization parameters.

"Check against the kernels, not the schema": the TFLite schema lets any op carry any tensor
type, but each kernel (tflite/kernels/*.cc in LiteRT) takes a few. int8/uint8/int16 tensors
are *quantized* types for most arithmetic kernels: without scale/zero point they give wrong
values or abort the process. :data:`PLAIN_DTYPES` lists, per builtin, the dtypes whose kernel
path computes on the raw values (tests/tflite/test_tflite_int_dtypes.py checks every row against
the installed runtime). Lowerings compute other dtypes in the narrowest wider type the kernel
takes that holds every value (:func:`compute_dtype`) and CAST back, or refuse the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.exporters.tflite.graph import LoweringContext, np_dtype

_F32, _I8, _U8, _I16, _U16 = "float32", "int8", "uint8", "int16", "uint16"
_I32, _U32, _I64, _BOOL = "int32", "uint32", "int64", "bool"

PLAIN_DTYPES: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    # add.cc: float32/int32/int64, int16 when unquantized; int8/uint8 only quantized.
    "ADD": (_F32, _I16, _I32, _I64),
    "SUB": (_F32, _I32, _I64),  # sub.cc: int16 only quantized
    "MUL": (_F32, _I16, _I32, _I64, _U32),  # mul.cc
    "DIV": (_F32, _I32),  # div.cc: "Div only supports FLOAT32, INT32 and quantized ..."
    "FLOOR_MOD": (_F32, _I8, _I16, _I32, _I64),  # floor_mod.cc
    "POW": (_F32, _I32),  # pow.cc
    "MAXIMUM": (_F32, _I8, _U8, _I16, _I32, _I64),  # maximum_minimum.cc
    "MINIMUM": (_F32, _I8, _U8, _I16, _I32, _I64),
    # comparisons.cc: int8/uint8 inputs are rescaled with their quantization parameters.
    "EQUAL": (_F32, _I16, _I32, _I64, _BOOL),
    "NOT_EQUAL": (_F32, _I16, _I32, _I64, _BOOL),
    "GREATER": (_F32, _I16, _I32, _I64),
    "GREATER_EQUAL": (_F32, _I16, _I32, _I64),
    "LESS": (_F32, _I16, _I32, _I64),
    "LESS_EQUAL": (_F32, _I16, _I32, _I64),
    "LOGICAL_AND": (_BOOL,), "LOGICAL_OR": (_BOOL,), "LOGICAL_NOT": (_BOOL,),
    "ABS": (_F32, _I16, _I32),  # elementwise.cc: int8 needs quantization
    "NEG": (_F32, _I8, _I16, _I32, _I64),
    "SIGN": (_F32, _I32),
    "RELU": (_F32,), "RELU6": (_F32,), "RELU_N1_TO_1": (_F32,),  # activations.cc
    "SUM": (_F32, _I32, _I64),  # reduce.cc
    "REDUCE_PROD": (_F32, _I32, _I64),
    "MEAN": (_F32, _I32, _I64),
    "REDUCE_MAX": (_F32, _I8, _U8, _I16, _I32, _I64),
    "REDUCE_MIN": (_F32, _I8, _U8, _I16, _I32, _I64),
    "REDUCE_ANY": (_BOOL,), "REDUCE_ALL": (_BOOL,),
    "ARG_MAX": (_F32, _I8, _U8, _I32, _BOOL), "ARG_MIN": (_F32, _I8, _U8, _I32, _BOOL),
    "REVERSE_V2": (_F32, _I8, _U8, _I16, _I32, _I64, _BOOL),  # reverse.cc
    "BATCH_MATMUL": (_F32,),  # batch_matmul.cc: int8/int16 only quantized
    "FULLY_CONNECTED": (_F32,),
    "CUMSUM": (_F32, _I32, _I64),
    # Data movement (concatenation.cc, gather.cc, pad.cc, split.cc, split_v.cc).
    "CONCATENATION": (_F32, _I8, _U8, _I16, _I32, _U32, _I64, _BOOL),
    "GATHER": (_F32, _I8, _U8, _I16, _I32, _I64, _BOOL),
    "PAD": (_F32, _I8, _U8, _I16, _I32, _I64, _BOOL),
    "PADV2": (_F32, _I8, _U8, _I16, _I32, _I64, _BOOL),
    "MIRROR_PAD": (_F32, _I8, _U8, _I16, _I32, _I64, _BOOL),
    "SPLIT": (_F32, _I8, _U8, _I16, _I32, _I64),
    "SPLIT_V": (_F32, _I8, _U8, _I16, _I32, _I64),
    "DEPTH_TO_SPACE": (_F32, _I8, _U8, _I32, _I64),  # depth_to_space.cc
    "SPACE_TO_DEPTH": (_F32, _I8, _U8, _I32, _I64),
    # pooling.cc: max pooling copies int8/uint8 values (no rescale, full-range clamp);
    # average pooling rounds quantized values, so it is float only here.
    "MAX_POOL_2D": (_F32, _I8, _U8),
    "AVERAGE_POOL_2D": (_F32,),
}.items()}

# Ops whose result in a wider type is not the narrow type's result (a mean rounds once).
_EXACT_ONLY = frozenset({"MEAN"})
# Wider dtypes that hold every value of a narrower one, narrowest first.
# float16 -> float32 is exact for one correctly rounded op (24 >= 2 * 11 + 2 bits).
_WIDER = {_I8: (_I16, _I32, _I64), _U8: (_I16, _I32, _I64), _I16: (_I32, _I64),
          _U16: (_I32, _I64), _U32: (_I64,), _BOOL: (_I32,), "float16": (_F32,)}


def compute_dtype(code: str, dtype: np.dtype | str) -> np.dtype | None:
    """The dtype to run builtin ``code`` in for ``dtype`` data (None: no exact way).

    ``dtype`` itself when the kernel computes on it unquantized, else the narrowest wider
    integer type it does (values are CAST there and back; wrap-around arithmetic stays exact
    modulo the narrow type's range). Ops missing from :data:`PLAIN_DTYPES` are not checked."""
    name = np.dtype(dtype).name
    plain = PLAIN_DTYPES.get(code)
    if plain is None or name in plain:
        return np.dtype(name)
    if code in _EXACT_ONLY:
        return None
    for wider in _WIDER.get(name, ()):
        if wider in plain:
            return np.dtype(wider)
    return None


def value_dtype(value: ir.Value | None) -> str | None:
    """numpy dtype name TFLite stores ``value`` in (None: unknown; 'uint64' etc. kept)."""
    if value is None or value.dtype is None:
        return None
    try:
        return np_dtype(value.dtype).name
    except ExportError:
        return str(value.dtype).split(".")[-1].lower()


def dtype_reason(code: str, *values: ir.Value | None) -> str | None:
    """Why builtin ``code`` cannot compute on ``values``' dtype (None when it can)."""
    for value in values:
        name = value_dtype(value)
        if name is None:
            continue
        try:
            ok = compute_dtype(code, name) is not None
        except TypeError:  # a dtype numpy has no name for
            ok = False
        if not ok:
            return f"{name} inputs: no LiteRT {code} kernel"
    return None


def cast(ctx: LoweringContext, src: int, dtype: np.dtype, dst: int | None = None) -> int:
    """Emit CAST of tensor ``src`` to ``dtype`` (into ``dst`` if given)."""
    from ai_edge_litert import schema_py_generated as s

    from modelconv.exporters.tflite.writer import tensor_type

    if dst is None:
        dst = ctx.like(src, f"as_{np.dtype(dtype).name}")
        ctx.t(dst).dtype = np.dtype(dtype)
    opts = s.CastOptionsT()
    opts.inDataType, opts.outDataType = tensor_type(ctx.t(src).dtype), tensor_type(dtype)
    ctx.emit("CAST", [src], [dst], opts)
    return dst


def _widened(ctx: LoweringContext, t: int, dtype: np.dtype) -> int:
    """``t`` as ``dtype``: constants are converted here, run-time tensors by a CAST op."""
    data = ctx.t(t).data
    if data is not None:
        return ctx.const(data.astype(dtype), f"{ctx.t(t).name}_{dtype.name}")
    return cast(ctx, t, dtype)


def emit_typed(ctx: LoweringContext, code: str, inputs: list[int], dst: int | list[int],
               options: Any = None, data: int = 0) -> None:
    """Emit ``code`` so its kernel computes on a dtype it takes unquantized.

    Inputs of the data input's (index ``data``) dtype that the kernel does not take are
    CAST to :func:`compute_dtype`; outputs of that dtype are CAST back (bool / index outputs
    are written directly)."""
    outs = [dst] if isinstance(dst, int) else list(dst)
    src = ctx.t(inputs[data]).dtype
    work = compute_dtype(code, src)
    if work is None:
        where = ctx.node.name if ctx.node is not None else "?"
        raise ExportError(f"no LiteRT {code} kernel computes on {src.name} (node {where})")
    if work == src:
        ctx.emit(code, inputs, outs, options)
        return
    ins = [_widened(ctx, i, work) if ctx.t(i).dtype == src else i for i in inputs]
    wide = []
    for o in outs:
        if ctx.t(o).dtype != src:
            wide.append(o)
            continue
        w = ctx.like(o, f"{code.lower()}_{work.name}")
        ctx.t(w).dtype = work
        wide.append(w)
    ctx.emit(code, ins, wide, options)
    for o, w in zip(outs, wide, strict=True):
        if o != w:
            cast(ctx, w, src, o)
