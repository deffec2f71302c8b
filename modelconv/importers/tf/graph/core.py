"""Tensors of the TensorFlow graph converter, their layout, and the op registry.

TensorFlow image ops are channels-last. As in the Keras importer, a :class:`TT` remembers
whether its IR value holds the TF (logical) order (``LAST``) or the channels-first order
(``FIRST``, rank >= 3 only): NHWC ops (Conv2D, pools, FusedBatchNorm, BiasAdd) produce
channels-first values, element-wise ops keep their operands' layout, and everything that
depends on the axis order (Reshape, Transpose, StridedSlice, ...) gets the TF order back
through one cached Transpose. Constants stay numpy arrays until an op needs them in the
graph, so variable reads, BatchNorm parameter arithmetic and shape computations on
constants fold in numpy as the graph is read.

A handler is ``fn(cx, node, ins) -> TT | list[TT]``: the converter context, the NodeDef
and its data inputs; it returns the node's outputs in TensorFlow's output order.

Consume or refuse: a handler is registered with the NodeDef attributes it understands
(``tf_op(..., attrs=...)``: read, or proven not to change the result) and those it handles at
one value only (``fixed=``, TensorFlow's default: a SavedModel leaves out attributes that
hold their default, so an absent one has that value). :func:`attr_problems` refuses every
other attribute, and any dtype attribute naming a type the converter cannot compute in,
before a handler runs. Attributes whose name starts with ``_`` are annotations of the
runtime (``_output_shapes``, ``_class``, ``_has_manual_control_dependencies``), never part
of an op's definition (OpDef attribute names start with a letter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.importers.tf.files.bundle import TF_DTYPES
from modelconv.importers.tf.files.saved_model import NodeDef
from modelconv.ir.builder import GraphBuilder
from modelconv.ir.layout import FIRST, LAST, ir_axis, perm_to_first, perm_to_last
from modelconv.registry import Registry

#: constants up to this many elements are shared between uses (GraphBuilder.const)
SMALL_CONST = 64


class ConvertError(ValueError):
    """A node the converter cannot express (message says why); names the node upstream."""


@dataclass
class Resource:
    """A resource handle (a variable) passed into a function: read by ReadVariableOp."""

    name: str
    read: Callable[[], np.ndarray]


class TT:
    """One TensorFlow tensor in the IR: value (made on demand for constants), rank
    (-1: unknown), layout, numpy dtype, constant value if known, for int vectors of known
    length that length (shape arithmetic), and the static shape the graph records."""

    __slots__ = (
        "_cx",
        "_value",
        "const",
        "dtype",
        "known",
        "layout",
        "length",
        "rank",
        "shape",
        "views",
    )

    def __init__(self, cx: Ctx, value: ir.Value | None = None, *, rank: int = -1,
                 layout: str = LAST, dtype: Any = np.float32,
                 const: np.ndarray | None = None, length: int | None = None):
        self._cx = cx
        self._value = value
        self.const = const
        self.dtype = np.dtype(const.dtype if const is not None else dtype)
        self.rank = const.ndim if const is not None else rank
        self.layout = layout if self.rank >= 3 else LAST
        self.length = length if const is None or const.ndim != 1 else const.shape[0]
        self.views: dict[str, ir.Value] = {}
        #: static TF shape (None: unknown dim) when the graph records it
        self.shape: list[int | None] | None = list(const.shape) if const is not None else None
        #: the values of a computed integer vector/scalar known element by element (shape
        #: arithmetic on a dynamic batch: ``tf.shape(x)`` of ``[None, 7, 7, 64]``)
        self.known: list[int | None] | None = None

    @property
    def value(self) -> ir.Value:
        """The IR value (a constant becomes an initializer the first time it is asked for)."""
        if self._value is None:
            assert self.const is not None
            arr = self.const
            if arr.size <= SMALL_CONST:
                self._value = self._cx.b.const(arr, dtype=arr.dtype)
            else:
                self._value = self._cx.b.initializer(np.asarray(arr),  # a view stays a view
                                                     self._cx.weight_name())
        return self._value

    def like(self, value: ir.Value, **kw: Any) -> TT:
        """A new tensor with this one's rank, layout and dtype unless overridden."""
        args: dict[str, Any] = {"rank": self.rank, "layout": self.layout, "dtype": self.dtype}
        args.update(kw)
        return TT(self._cx, value, **args)


OpHandler = Callable[["Ctx", NodeDef, list[Any]], Any]  # TT, list of outputs, or a handle
OPS: Registry[OpHandler] = Registry("tensorflow op")


@dataclass(frozen=True)
class AttrSpec:
    """The NodeDef attributes a handler understands (any value) and those it handles at
    one value only (attribute -> that value, as the decoder gives it)."""

    attrs: frozenset[str]
    fixed: Mapping[str, Any] = field(default_factory=dict)


#: op name -> the attributes its handler declares (filled by :func:`tf_op`)
OP_ATTRS: dict[str, AttrSpec] = {}
#: TensorFlow dtype enums the converter computes in (numeric, bool, bfloat16 as float32),
#: plus resource (20) and variant (21) handles of variables and TensorLists
COMPUTABLE_DTYPES = frozenset({*TF_DTYPES, 14, 20, 21})
#: names of the TensorFlow dtypes the converter refuses (for messages)
_DTYPE_NAMES = {7: "string", 8: "complex64", 11: "qint8", 12: "quint8", 13: "qint32",
                15: "qint16", 16: "quint16", 18: "complex128", 20: "resource", 21: "variant"}


def tf_op(*names: str, attrs: Iterable[str] = (), fixed: Mapping[str, Any] | None = None
          ) -> Callable[[OpHandler], OpHandler]:
    """Register a handler for the TensorFlow ops ``names``.

    Args:
        names: the op names (NodeDef ``op``) the handler converts.
        attrs: the attributes it understands at any value (reads, or that cannot change
            the result, such as ``use_cudnn_on_gpu``).
        fixed: attributes it handles at one value only (TensorFlow's default).

    Returns:
        The decorator, which registers the handler in :data:`OPS` and its attributes in
        :data:`OP_ATTRS`.
    """
    spec = AttrSpec(frozenset(attrs), dict(fixed or {}))

    def deco(fn: OpHandler) -> OpHandler:
        OPS.register(*names)(fn)
        for name in names:
            OP_ATTRS[name] = spec
        return fn
    return deco


def attr_problems(node: NodeDef) -> list[str]:
    """What the handler of ``node`` cannot take about its attributes, one phrase each
    (``attribute batch_dims=1``): an attribute it does not declare, a fixed attribute at
    another value, a dtype attribute of a type the converter cannot compute in."""
    spec = OP_ATTRS.get(node.op)
    if spec is None:
        return []
    problems = []
    for name, attr in sorted(node.attrs.items()):
        if name.startswith("_"):
            continue
        if name in spec.fixed:
            if attr.value != spec.fixed[name]:
                problems.append(f"attribute {name}={_shown(attr.value)}")
        elif name not in spec.attrs:
            problems.append(f"attribute {name}={_shown(attr.value)} is not read")
        elif attr.kind == "type" and attr.value not in COMPUTABLE_DTYPES:
            problems.append(f"attribute {name}={dtype_name(attr.value)}")
    return problems


def dtype_name(type_enum: int) -> str:
    """A TensorFlow dtype enum as a name for messages (numeric types by numpy's name)."""
    if type_enum == 14:
        return "bfloat16"
    if type_enum in TF_DTYPES:
        return TF_DTYPES[type_enum].name
    return _DTYPE_NAMES.get(type_enum, f"TensorFlow dtype {type_enum}")


def _shown(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:40]
    if isinstance(value, memoryview):
        return "<tensor>"
    return str(value)[:40]


#: output argument names of ops with more than one (``node:arg:index`` references)
OUTPUT_ARGS: dict[str, list[str]] = {
    "FusedBatchNorm": ["y", "batch_mean", "batch_variance", "reserve_space_1",
                       "reserve_space_2"],
    "FusedBatchNormV2": ["y", "batch_mean", "batch_variance", "reserve_space_1",
                         "reserve_space_2"],
    "FusedBatchNormV3": ["y", "batch_mean", "batch_variance", "reserve_space_1",
                         "reserve_space_2", "reserve_space_3"],
    "TopKV2": ["values", "indices"],
    "Unique": ["y", "idx"],
}


class Ctx:
    """What handlers use: the builder and helpers for constants and layouts."""

    def __init__(self, b: GraphBuilder, call: Callable[[str, list[Any], str], list[Any]]):
        self.b = b
        self.call_function = call

    def weight_name(self) -> str:
        """A name for a constant initializer, after the node being converted."""
        return (self.b.current_source or "const").replace("/", ".")

    # -- making tensors -------------------------------------------------------------
    def const(self, array: Any, dtype: Any = None) -> TT:
        """A constant tensor (numpy value kept for folding)."""
        arr = np.asarray(array, dtype=dtype)
        return TT(self, None, const=arr)

    def out(self, value: ir.Value, rank: int, dtype: Any, layout: str = LAST,
            length: int | None = None) -> TT:
        """A computed tensor."""
        return TT(self, value, rank=rank, layout=layout, dtype=dtype, length=length)

    def gather(self, data: TT, indices: TT, axis: int, batch_dims: int = 0) -> TT:
        """``data`` gathered along TF axis ``axis`` (>= 0; folded when both are constants),
        the first ``batch_dims`` (>= 0) dimensions of both paired up."""
        if batch_dims:
            return _gather_batched(self, data, indices, axis, batch_dims)
        if data.const is not None and indices.const is not None:
            return self.const(np.take(data.const, indices.const, axis=axis))
        rank = data.rank + indices.rank - 1 if data.rank >= 0 and indices.rank >= 0 else -1
        value = self.b.Gather(self.last(data), self.last(indices), axis=axis)
        return self.out(value, rank, data.dtype)

    # -- layouts -------------------------------------------------------------------
    def _view(self, x: TT, layout: str) -> ir.Value:
        if x.rank < 3 or x.layout == layout:
            return x.value
        if x.const is not None:
            perm = perm_to_first(x.rank) if layout == FIRST else perm_to_last(x.rank)
            return self.const(np.transpose(x.const, perm)).value
        if layout not in x.views:
            perm = perm_to_first(x.rank) if layout == FIRST else perm_to_last(x.rank)
            dims = x.shape
            to_first = perm_to_first(x.rank)
            if dims is not None and dims.count(None) <= 1 and 0 not in dims and \
                    [a for a in to_first if dims[a] != 1] == \
                    [a for a in range(x.rank) if dims[a] != 1]:
                # only size-1 dims move ([N,1,1,C] <-> [N,C,1,1], [N,H,W,1] <->
                # [N,1,H,W]): a Reshape does it
                target = [-1 if d is None else int(d) for d in dims]
                if layout == FIRST:
                    target = [target[i] for i in perm_to_first(x.rank)]
                x.views[layout] = self.b.Reshape(x.value,
                                                 self.const(np.asarray(target, np.int64)).value)
            else:
                x.views[layout] = self.b.Transpose(x.value, perm=perm)
        return x.views[layout]

    def first(self, x: TT) -> ir.Value:
        """``x`` channels-first (a tensor of rank < 3 as it is)."""
        return self._view(x, FIRST)

    def last(self, x: TT) -> ir.Value:
        """``x`` in TensorFlow's axis order."""
        return self._view(x, LAST)

    def in_layout(self, x: TT, layout: str, rank: int) -> ir.Value:
        """``x`` ready to broadcast against a rank-``rank`` tensor held in ``layout``: a
        lower-rank constant is right-aligned and permuted, a computed tensor must already
        have that rank (or be a scalar)."""
        if layout == LAST or rank < 3:
            return self.last(x)
        if x.const is not None and 0 < x.const.ndim <= rank:
            arr = x.const.reshape((1,) * (rank - x.const.ndim) + x.const.shape)
            return self.const(np.transpose(arr, perm_to_first(rank))).value
        if x.rank == rank:
            return self.first(x)
        return x.value  # a scalar broadcasts either way

    def int_values(self, x: TT, what: str) -> list[int]:
        """A constant integer input (axes, perm, paddings) as a list."""
        if x.const is None:
            raise ConvertError(f"{what} must be a constant")
        return [int(v) for v in np.asarray(x.const).reshape(-1)]


def _gather_batched(cx: Ctx, data: TT, indices: TT, axis: int, b: int) -> TT:
    """Gather with ``b`` batch dims: ONNX GatherND(batch_dims=b) on ``data`` with ``axis``
    moved to ``b``, then the index dims moved after ``data``'s dims ``b..axis``."""
    if data.rank < 0 or indices.rank < 0:
        raise ConvertError("batch_dims on operands of unknown rank")
    if not b <= axis < data.rank or b > indices.rank:
        raise ConvertError(f"batch_dims {b} with axis {axis}")
    if data.const is not None and indices.const is not None:
        flat_d = data.const.reshape(-1, *data.const.shape[b:])
        flat_i = indices.const.reshape(-1, *indices.const.shape[b:])
        parts = [np.take(d, i, axis=axis - b) for d, i in zip(flat_d, flat_i, strict=True)]
        return cx.const(np.stack(parts).reshape(*data.const.shape[:b], *parts[0].shape))
    move = [*range(b), axis, *range(b, axis), *range(axis + 1, data.rank)]
    value = cx.last(data)
    if move != sorted(move):
        value = cx.b.Transpose(value, perm=move)
    index = cx.b.Unsqueeze(cx.b.Cast(cx.last(indices), to=ir.DataType.INT64),
                           cx.const(np.asarray([-1], np.int64)).value)
    value = cx.b.GatherND(value, index, batch_dims=b)
    n_idx, n_mid = indices.rank - b, axis - b
    rank = data.rank + indices.rank - b - 1
    if n_mid and n_idx:
        perm = [*range(b), *range(b + n_idx, b + n_idx + n_mid), *range(b, b + n_idx),
                *range(b + n_idx + n_mid, rank)]
        value = cx.b.Transpose(value, perm=perm)
    return cx.out(value, rank, data.dtype)


def axis_in(axis: int, rank: int, layout: str) -> int:
    """The IR axis holding TF axis ``axis`` of a rank-``rank`` tensor in ``layout`` (the
    Keras importer's mapping; out of range is a ConvertError)."""
    try:
        return ir_axis(axis, rank, layout)
    except ValueError as exc:
        raise ConvertError(str(exc)) from exc


def kept_layout(rank: int, layout: str, dropped: set[int]) -> str | None:
    """Layout of what remains of a tensor when the TF axes ``dropped`` are removed in
    its IR order: LAST/FIRST when the remaining IR order is one of the two, else None."""
    order = list(range(rank)) if layout == LAST or rank < 3 else perm_to_first(rank)
    kept = [a for a in order if a not in dropped]
    new_rank = len(kept)
    renum = {a: i for i, a in enumerate(sorted(kept))}
    seq = [renum[a] for a in kept]
    if seq == list(range(new_rank)):
        return LAST
    if new_rank >= 3 and seq == perm_to_first(new_rank):
        return FIRST
    return None


def np_dtype_of(type_enum: int) -> np.dtype[Any]:
    """numpy dtype of a TensorFlow dtype enum (float32 for unknown ones: attributes of
    other types are refused before a handler runs, see :func:`attr_problems`)."""
    if type_enum == 14:  # bfloat16 is computed in float32
        return np.dtype(np.float32)
    return TF_DTYPES.get(type_enum, np.dtype(np.float32))


def known_values(t: TT) -> list[int | None] | None:
    """Element values of an integer scalar/vector: all of a constant, some of a shape."""
    if t.const is not None:
        if t.const.ndim <= 1 and t.const.dtype.kind in "iu":
            return [int(v) for v in t.const.reshape(-1)]
        return None
    return t.known


def with_known(cx: Ctx, out: TT, values: list[int | None] | None, shape: tuple[int, ...]
               ) -> TT:
    """``out`` (a computed int tensor of ``shape``), or the constant its ``values`` make
    when every one is known."""
    if values is None:
        return out
    if all(v is not None for v in values):
        return cx.const(np.asarray(values, dtype=out.dtype).reshape(shape))
    out.known = list(values)
    return out
