"""Element-wise math, reductions, matrix products, constants and pass-through ops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv import protowire as pw
from modelconv.errors import ModelLoadError
from modelconv.importers.tf.files.saved_model import NodeDef, tensor_value
from modelconv.importers.tf.graph.core import (
    FIRST,
    LAST,
    TT,
    ConvertError,
    Ctx,
    Resource,
    axis_in,
    kept_layout,
    np_dtype_of,
    tf_op,
)

# --------------------------------------------------------------------------------------
# values and pass-through


@tf_op("Const", attrs=("value", "dtype"))
def tf_const(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Const: the tensor value as a numpy constant (numeric dtypes; strings refused)."""
    raw = node.attr("value")
    if not isinstance(raw, memoryview):
        raise ModelLoadError(f"Const '{node.name}' has no tensor value")
    try:
        return cx.const(tensor_value(raw))
    except pw.ProtoError as exc:
        if "string constant" in str(exc):
            raise ConvertError("string constant") from exc
        raise ModelLoadError(f"Const '{node.name}': {exc}") from exc


def _variable(cx: Ctx, handle: Any) -> TT:
    """The saved value behind a resource handle."""
    if not isinstance(handle, Resource):
        raise ConvertError("reads something that is not a saved variable")
    return cx.const(handle.read())


@tf_op("ReadVariableOp", attrs=("dtype",))
def tf_read_variable_op(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    """ReadVariableOp: the saved value of a captured variable, as a constant."""
    return _variable(cx, ins[0])


@tf_op("ResourceGather", attrs=("dtype", "Tindices", "validate_indices", "batch_dims"))
def tf_resource_gather(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    """ResourceGather: rows of a saved variable (an embedding lookup), batch_dims too."""
    table, indices = _variable(cx, ins[0]), ins[1]
    b = int(node.attr("batch_dims", 0))
    b = b + indices.rank if b < 0 and indices.rank >= 0 else b
    return cx.gather(table, indices, b, b)



@tf_op("Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape",
       "CheckNumerics", attrs=("T", "message", "shape"))
def tf_identity(cx: Ctx, node: NodeDef, ins: list[Any]) -> Any:
    """Identity, StopGradient, Snapshot, PreventGradient, EnsureShape, CheckNumerics:
    the input itself (the run-time checks of the last two are not kept)."""
    return ins[0]


@tf_op("IdentityN", attrs=("T",))
def tf_identity_n(cx: Ctx, node: NodeDef, ins: list[Any]) -> list[Any]:
    """IdentityN: the inputs themselves."""
    return list(ins)


@tf_op("NoOp")
def tf_no_op(cx: Ctx, node: NodeDef, ins: list[Any]) -> list[Any]:
    """NoOp: no outputs."""
    return []


# --------------------------------------------------------------------------------------
# element-wise


def combine(cx: Ctx, ins: list[TT]) -> tuple[str, int, list[ir.Value]]:
    """Operands of a broadcasting op in one layout: ``(layout, rank, values)``.

    Channels-first when an operand is and every computed operand has the full rank (or is
    a scalar); constants of lower rank are right-aligned and permuted to match."""
    ranks = [t.rank for t in ins]
    if any(r < 0 for r in ranks):
        return LAST, -1, [cx.last(t) for t in ins]
    rank = max(ranks)
    computed = [t for t in ins if t.const is None]
    layout = LAST
    if rank >= 3 and any(t.layout == FIRST for t in computed) and \
            all(t.rank in (rank, 0) for t in computed):
        layout = FIRST
    return layout, rank, [cx.in_layout(t, layout, rank) for t in ins]


NpFn = Callable[..., np.ndarray]
#: constant operands are folded in numpy only up to this many result elements
MAX_FOLD = 1 << 24


def _fold_size(shapes: list[tuple[int, ...]]) -> int:
    """Elements of the broadcast result (huge when the shapes do not broadcast: not folded,
    the op then reports the mismatch)."""
    try:
        return int(np.prod(np.broadcast_shapes(*shapes), dtype=np.float64))
    except ValueError:
        return 1 << 62


def elementwise(cx: Ctx, ins: list[TT], emit: Callable[..., ir.Value],
                fold: NpFn | None = None, dtype: Any = None) -> TT:
    """Apply ``emit(*values)`` (or ``fold`` when every operand is a constant)."""
    out_dtype = np.dtype(dtype) if dtype is not None else ins[0].dtype
    if fold is not None and all(t.const is not None for t in ins) and \
            _fold_size([t.const.shape for t in ins if t.const is not None]) <= MAX_FOLD:
        return cx.const(np.asarray(fold(*[t.const for t in ins])).astype(out_dtype))
    layout, rank, values = combine(cx, ins)
    return cx.out(emit(*values), rank, out_dtype, layout)


def tf_binary(onnx_op: str, fold: NpFn | None, *, bool_out: bool = False
              ) -> Callable[[Ctx, NodeDef, list[TT]], TT]:
    """The handler of a broadcasting binary TF op that is one ONNX op (``BINARY``)."""
    def handler(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
        return elementwise(cx, ins[:2], lambda a, b: cx.b.op(onnx_op, [a, b]), fold,
                           np.bool_ if bool_out else None)
    handler.__doc__ = f"{onnx_op} of two broadcasting operands (folded when both are constants)."
    return handler


def _rsqrt(x: np.ndarray) -> np.ndarray:
    return (1.0 / np.sqrt(x)).astype(x.dtype)


#: TF op -> (ONNX op, numpy fold, bool result); the handlers read T (the logical
#: ops have no attributes; Equal computes incompatible_shape_error=True only)
BINARY: dict[str, tuple[str, NpFn | None, bool]] = {
    "Add": ("Add", np.add, False), "AddV2": ("Add", np.add, False),
    "Sub": ("Sub", np.subtract, False), "Mul": ("Mul", np.multiply, False),
    "RealDiv": ("Div", np.divide, False), "Maximum": ("Max", np.maximum, False),
    "Minimum": ("Min", np.minimum, False), "Pow": ("Pow", np.power, False),
    "Greater": ("Greater", np.greater, True), "GreaterEqual": ("GreaterOrEqual",
                                                               np.greater_equal, True),
    "Less": ("Less", np.less, True), "LessEqual": ("LessOrEqual", np.less_equal, True),
    "Equal": ("Equal", np.equal, True), "LogicalAnd": ("And", np.logical_and, True),
    "LogicalOr": ("Or", np.logical_or, True),
}
for _name, (_op, _fold, _bool) in BINARY.items():
    tf_op(_name, attrs=() if _name.startswith("Logical") else ("T",),
          fixed={"incompatible_shape_error": True} if _name == "Equal" else None)(
        tf_binary(_op, _fold, bool_out=_bool))


@tf_op("Div", attrs=("T",))
def tf_div(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Div: float division, or C-style (truncating) division of integers."""
    if ins[0].dtype.kind in "iu":  # C-style (truncating) integer division, as ONNX's
        return elementwise(cx, ins, cx.b.Div,
                           lambda a, b: np.trunc(a / b).astype(a.dtype))
    return elementwise(cx, ins, cx.b.Div, np.divide)


@tf_op("FloorDiv", attrs=("T",))
def tf_floor_div(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """FloorDiv: Floor(Div) of floats; integers only when both operands are constants."""
    if ins[0].dtype.kind == "f":
        return elementwise(cx, ins, lambda a, b: cx.b.Floor(cx.b.Div(a, b)), np.floor_divide)
    a, b = ins[0].const, ins[1].const
    if a is not None and b is not None:
        return cx.const(np.floor_divide(a, b))
    raise ConvertError("integer FloorDiv of computed values")


@tf_op("FloorMod", attrs=("T",))
def tf_floor_mod(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """FloorMod: ONNX Mod of integers; floats only when both operands are constants."""
    fmod = 1 if ins[0].dtype.kind == "f" else 0
    if fmod and not all(t.const is not None for t in ins):
        raise ConvertError("float FloorMod of computed values")
    return elementwise(cx, ins, lambda a, b: cx.b.Mod(a, b, fmod=fmod), np.mod)


@tf_op("SquaredDifference", attrs=("T",))
def tf_squared_difference(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """SquaredDifference: (a - b) * (a - b)."""
    def emit(a: ir.Value, b: ir.Value) -> ir.Value:
        d = cx.b.Sub(a, b)
        return cx.b.Mul(d, d)
    return elementwise(cx, ins, emit, lambda a, b: np.square(a - b))


@tf_op("NotEqual", attrs=("T",), fixed={"incompatible_shape_error": True})
def tf_not_equal(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """NotEqual: Not(Equal) of operands that broadcast."""
    return elementwise(cx, ins, lambda a, b: cx.b.Not(cx.b.Equal(a, b)), np.not_equal,
                       np.bool_)


@tf_op("SelectV2", "Select", attrs=("T",))
def tf_select(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """SelectV2, Select: ONNX Where (Select with a rank-1 condition on rows refused)."""
    if node.op == "Select" and ins[0].rank == 1 and ins[1].rank > 1:
        raise ConvertError("row-wise Select")
    # the result has the branches' dtype, not the condition's (bool)
    return elementwise(cx, ins, cx.b.Where, np.where, ins[1].dtype)


@tf_op("AddN", attrs=("N", "T"))
def tf_add_n(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """AddN: ONNX Sum of the inputs."""
    return elementwise(cx, ins, cx.b.Sum, lambda *xs: np.sum(xs, axis=0))


@tf_op("ClipByValue", attrs=("T",))
def tf_clip_by_value(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """ClipByValue: Max(Min(x, hi), lo), bounds broadcast."""
    return elementwise(cx, ins, lambda x, lo, hi: cx.b.Max(cx.b.Min(x, hi), lo),
                       lambda x, lo, hi: np.maximum(np.minimum(x, hi), lo))


def tf_unary(emit: Callable[[Ctx, ir.Value, NodeDef], ir.Value], fold: NpFn | None = None,
             bool_out: bool = False) -> Callable[[Ctx, NodeDef, list[TT]], TT]:
    """The handler of an element-wise unary TF op (``UNARY``): ``emit`` on the input in its
    own layout, ``fold`` on a constant input."""
    def handler(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
        x = ins[0]
        if fold is not None and x.const is not None:
            return cx.const(np.asarray(fold(x.const)).astype(np.bool_ if bool_out else x.dtype))
        dtype = np.bool_ if bool_out else x.dtype
        return x.like(emit(cx, x.value, node), dtype=np.dtype(dtype))
    handler.__doc__ = "An element-wise unary op, in the input's layout (folded on constants)."
    return handler


def _plain(op: str) -> Callable[[Ctx, ir.Value, NodeDef], ir.Value]:
    return lambda cx, v, node: cx.b.op(op, [v])


#: TF op -> (emit, numpy fold); the handlers read T (LeakyRelu: alpha too;
#: LogicalNot has no attributes)
UNARY: dict[str, tuple[Callable[[Ctx, ir.Value, NodeDef], ir.Value], NpFn | None]] = {
    "Relu": (_plain("Relu"), lambda x: np.maximum(x, 0)),
    "Relu6": (lambda cx, v, n: cx.b.Clip(v, cx.const(np.float32(0)).value,
                                         cx.const(np.float32(6)).value),
              lambda x: np.clip(x, 0, 6)),
    "Elu": (lambda cx, v, n: cx.b.Elu(v, alpha=1.0), None),
    "Selu": (_plain("Selu"), None),
    "Sigmoid": (_plain("Sigmoid"), None),
    "Tanh": (_plain("Tanh"), np.tanh),
    "Exp": (_plain("Exp"), np.exp),
    "Log": (_plain("Log"), np.log),
    "Log1p": (lambda cx, v, n: cx.b.Log(cx.b.Add(v, cx.const(np.float32(1)).value)),
              np.log1p),
    "Sqrt": (_plain("Sqrt"), np.sqrt),
    "Rsqrt": (lambda cx, v, n: cx.b.Reciprocal(cx.b.Sqrt(v)), _rsqrt),
    "Square": (lambda cx, v, n: cx.b.Mul(v, v), np.square),
    "Neg": (_plain("Neg"), np.negative),
    "Abs": (_plain("Abs"), np.abs),
    "Reciprocal": (_plain("Reciprocal"), np.reciprocal),
    "Inv": (_plain("Reciprocal"), np.reciprocal),
    "Erf": (_plain("Erf"), None),
    "Erfc": (lambda cx, v, n: cx.b.Sub(cx.const(np.float32(1)).value, cx.b.Erf(v)), None),
    "Softplus": (_plain("Softplus"), None),
    "Softsign": (_plain("Softsign"), None),
    "Floor": (_plain("Floor"), np.floor),
    "Ceil": (_plain("Ceil"), np.ceil),
    "Round": (_plain("Round"), np.round),
    "Sign": (_plain("Sign"), np.sign),
    "Sin": (_plain("Sin"), np.sin),
    "Cos": (_plain("Cos"), np.cos),
    "LeakyRelu": (lambda cx, v, n: cx.b.LeakyRelu(v, alpha=float(n.attr("alpha", 0.2))),
                  None),
    "LogicalNot": (_plain("Not"), np.logical_not),
}
for _name, (_emit, _ufold) in UNARY.items():
    tf_op(_name, attrs={"LeakyRelu": ("T", "alpha"), "LogicalNot": ()}.get(_name, ("T",)))(
        tf_unary(_emit, _ufold))
tf_op("IsNan", attrs=("T",))(tf_unary(_plain("IsNaN"), np.isnan, bool_out=True))


@tf_op("Cast", attrs=("SrcT", "DstT"), fixed={"Truncate": False})
def tf_cast(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Cast to DstT (Truncate=True, a rounding mode for narrowing floats, refused)."""
    dtype = np_dtype_of(int(node.attr("DstT", 1)))
    x = ins[0]
    if x.const is not None:
        return cx.const(x.const.astype(dtype))
    if x.dtype == dtype:
        return x
    return x.like(cx.b.Cast(x.value, to=ir.DataType.from_numpy(dtype)), dtype=dtype)


@tf_op("Softmax", "LogSoftmax", attrs=("T",))
def tf_softmax(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Softmax, LogSoftmax over the last TF axis (in the tensor's own layout)."""
    x = ins[0]
    axis = axis_in(-1, x.rank, x.layout) if x.rank > 0 else -1
    return x.like(cx.b.op(node.op, [x.value], axis=axis))


# --------------------------------------------------------------------------------------
# reductions

REDUCE: dict[str, tuple[str, NpFn]] = {
    "Mean": ("ReduceMean", np.mean), "Sum": ("ReduceSum", np.sum),
    "Max": ("ReduceMax", np.max), "Min": ("ReduceMin", np.min),
    "Prod": ("ReduceProd", np.prod), "All": ("ReduceMin", np.all),
    "Any": ("ReduceMax", np.any),
}


def tf_reduce(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Mean, Sum, Max, Min, Prod, All, Any over constant axes, keep_dims either way (bool
    All/Any through int32)."""
    onnx_op, fold = REDUCE[node.op]
    x, axes_t = ins
    keep = bool(node.attr("keep_dims", False))
    axes = cx.int_values(axes_t, "reduction axes")
    if x.const is not None:
        return cx.const(np.asarray(fold(x.const, axis=tuple(axes), keepdims=keep)
                                   ).astype(x.const.dtype))
    if not axes:
        return x
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    logical = {a + x.rank if a < 0 else a for a in axes}
    layout = x.layout if keep else kept_layout(x.rank, x.layout, logical)
    source = x
    if layout is None:
        source = x.like(cx.last(x), layout=LAST)
        layout = LAST
    ir_axes = sorted(axis_in(a, source.rank, source.layout) for a in logical)
    value = source.value
    is_bool = x.dtype == np.bool_
    if is_bool:
        value = cx.b.Cast(value, to=ir.DataType.INT32)
    out = cx.b.op(onnx_op, [value, cx.const(np.asarray(ir_axes, np.int64)).value],
                  keepdims=int(keep))
    if is_bool:
        out = cx.b.Cast(out, to=ir.DataType.BOOL)
    rank = x.rank if keep else x.rank - len(logical)
    reduced = cx.out(out, rank, x.dtype, layout)
    if x.rank == 1 and x.known is not None:
        reduced.known = [None]  # one (unknown) value: a Pack of it stays partly known
    return reduced


tf_op(*REDUCE, attrs=("T", "Tidx", "keep_dims"))(tf_reduce)


# --------------------------------------------------------------------------------------
# matrix products


def _swap_last2(cx: Ctx, x: TT) -> ir.Value:
    if x.rank < 2:
        raise ConvertError("transposed operand of unknown rank")
    if x.const is not None:
        return cx.const(np.swapaxes(x.const, -1, -2)).value
    perm = [*range(x.rank - 2), x.rank - 1, x.rank - 2]
    return cx.b.Transpose(cx.last(x), perm=perm)


def _matmul_operands(cx: Ctx, ins: list[TT], ta: bool, tb: bool) -> tuple[ir.Value, ir.Value]:
    a, b = ins[0], ins[1]
    return (_swap_last2(cx, a) if ta else cx.last(a), _swap_last2(cx, b) if tb else cx.last(b))


@tf_op("MatMul", attrs=("T", "transpose_a", "transpose_b", "grad_a", "grad_b"))
def tf_matmul(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """MatMul of rank-2 operands, transpose_a/transpose_b (grad_a/grad_b are hints)."""
    a, b = _matmul_operands(cx, ins, bool(node.attr("transpose_a", False)),
                            bool(node.attr("transpose_b", False)))
    return cx.out(cx.b.MatMul(a, b), 2, ins[0].dtype)


@tf_op("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3",
       attrs=("T", "Ta", "Tb", "Tout", "adj_x", "adj_y", "grad_x", "grad_y"))
def tf_batch_matmul(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """BatchMatMul, BatchMatMulV2, BatchMatMulV3: broadcasting MatMul, adj_x/adj_y
    (V3 only with Tout = Ta)."""
    if node.op == "BatchMatMulV3" and node.attr("Tout") != node.attr("Ta"):
        raise ConvertError(f"Tout {node.attr('Tout')} differs from Ta {node.attr('Ta')}")
    a, b = _matmul_operands(cx, ins, bool(node.attr("adj_x", False)),
                            bool(node.attr("adj_y", False)))
    rank = max(ins[0].rank, ins[1].rank) if min(ins[0].rank, ins[1].rank) >= 0 else -1
    return cx.out(cx.b.MatMul(a, b), rank, ins[0].dtype)


@tf_op("Einsum", attrs=("equation", "N", "T"))
def tf_einsum(cx: Ctx, node: NodeDef, ins: list[TT]) -> TT:
    """Einsum with an explicit output (``->``), without ellipses."""
    equation = (node.attr("equation") or b"").decode("ascii", "replace").replace(" ", "")
    if "->" not in equation or "." in equation:
        raise ConvertError(f"equation '{equation}'")
    rank = len(equation.split("->")[1])
    return cx.out(cx.b.Einsum(*[cx.last(t) for t in ins], equation=equation), rank,
                  ins[0].dtype)
