"""While loops with a trip count known when the graph is read, and the TensorLists they
fill (what Keras RNN layers become in a TF graph), unrolled step by step.

The loop condition is evaluated on the loop variables at every step; while it folds to a
constant (counters start as constants and the bound comes from a static sequence length)
the body function is inlined once more. A condition that depends on data or on a dynamic
size is refused with ConvertError, so such a graph goes to tf2onnx instead. TensorLists are
Python lists of tensors while the graph is read (every index must be constant); stacking
one is a Concat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelconv.importers.tf.files.saved_model import NodeDef
from modelconv.importers.tf.graph.core import TT, ConvertError, Ctx, tf_op

#: longest loop unrolled (a sequence model's time steps)
MAX_UNROLL = 1024
#: most nodes one loop may add when unrolled (a big body times many steps)
MAX_UNROLLED_NODES = 200_000


@dataclass(frozen=True)
class TensorList:
    """A TensorList value: its items (None: not written yet) and, for a list made from a
    tensor, that tensor (items are its slices along axis 0, taken when first read)."""

    items: tuple[TT | None, ...]
    source: TT | None = None

    def get(self, cx: Ctx, index: int) -> TT:
        """Item ``index`` (a slice of the source tensor if it was never written)."""
        if not -len(self.items) <= index < len(self.items):
            raise ConvertError(f"index {index} of a list of {len(self.items)}")
        item = self.items[index]
        if item is not None:
            return item
        if self.source is None:
            raise ConvertError(f"item {index} read before it is written")
        return cx.gather(self.source, cx.const(np.asarray(index, np.int64)), 0)

    def set(self, index: int, item: TT) -> TensorList:
        """A new list with item ``index`` replaced."""
        if not -len(self.items) <= index < len(self.items):
            raise ConvertError(f"index {index} of a list of {len(self.items)}")
        items = list(self.items)
        items[index] = item
        return TensorList(tuple(items), self.source)


def _list(value: Any) -> TensorList:
    if not isinstance(value, TensorList):
        raise ConvertError("operand is not a TensorList")
    return value


def _index(cx: Ctx, t: Any) -> int:
    if not isinstance(t, TT):
        raise ConvertError("index is not a tensor")
    return cx.int_values(t, "list index (a loop with a dynamic trip count?)")[0]


@tf_op("While", "StatelessWhile")
def _while(cx: Ctx, node: NodeDef, ins: list[Any]) -> list[Any]:
    cond, body = node.attr("cond"), node.attr("body")
    if not isinstance(cond, str) or not isinstance(body, str):
        raise ConvertError("cond/body are not functions")
    state = list(ins)
    start = len(cx.b.nodes)
    for step in range(MAX_UNROLL + 1):
        if len(cx.b.nodes) - start > MAX_UNROLLED_NODES:
            raise ConvertError(f"unrolling would add more than {MAX_UNROLLED_NODES} nodes")
        (flag,) = cx.call_function(cond, state, node.name)[:1]
        if not isinstance(flag, TT) or flag.const is None:
            raise ConvertError("loop condition depends on values known only at run time")
        if not bool(np.asarray(flag.const).reshape(-1)[0]):
            return state
        if step == MAX_UNROLL:
            raise ConvertError(f"more than {MAX_UNROLL} iterations")
        state = cx.call_function(body, state, node.name)
        if len(state) != len(ins):
            raise ConvertError("body returns a different number of loop variables")
    raise ConvertError("unreachable")  # pragma: no cover


@tf_op("TensorListReserve")
def _reserve(cx: Ctx, node: NodeDef, ins: list[Any]) -> TensorList:
    count = _index(cx, ins[1])
    if not 0 <= count <= MAX_UNROLL:
        raise ConvertError(f"list of {count} elements")
    return TensorList((None,) * count)


@tf_op("TensorListFromTensor")
def _from_tensor(cx: Ctx, node: NodeDef, ins: list[Any]) -> TensorList:
    src = ins[0]
    if not isinstance(src, TT) or src.rank < 1:
        raise ConvertError("source of unknown rank")
    count = src.const.shape[0] if src.const is not None else \
        (src.shape[0] if src.shape is not None else None)
    if count is None or count > MAX_UNROLL:
        raise ConvertError("list length known only at run time")
    return TensorList((None,) * int(count), src)


@tf_op("TensorListGetItem")
def _get_item(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    return _list(ins[0]).get(cx, _index(cx, ins[1]))


@tf_op("TensorListSetItem")
def _set_item(cx: Ctx, node: NodeDef, ins: list[Any]) -> TensorList:
    if not isinstance(ins[2], TT):
        raise ConvertError("item is not a tensor")
    return _list(ins[0]).set(_index(cx, ins[1]), ins[2])


@tf_op("TensorListLength")
def _length(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    return cx.const(np.asarray(len(_list(ins[0]).items), np.int32))


@tf_op("TensorListStack")
def _stack(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    lst = _list(ins[0])
    if not lst.items:
        raise ConvertError("stacking an empty list")
    items = [lst.get(cx, i) for i in range(len(lst.items))]
    if all(t.const is not None for t in items):
        return cx.const(np.stack([t.const for t in items if t.const is not None]))
    axes = cx.const(np.asarray([0], np.int64)).value
    parts = [cx.b.Unsqueeze(cx.last(t), axes) for t in items]
    value = parts[0] if len(parts) == 1 else cx.b.Concat(*parts, axis=0)
    rank = items[0].rank + 1 if items[0].rank >= 0 else -1
    return cx.out(value, rank, items[0].dtype)


@tf_op("ReverseV2")
def _reverse(cx: Ctx, node: NodeDef, ins: list[Any]) -> TT:
    from modelconv.importers.tf.graph.core import axis_in

    x, axes_t = ins
    axes = cx.int_values(axes_t, "axes")
    if x.const is not None:
        return cx.const(np.flip(x.const, axis=tuple(axes)).copy())
    if x.rank < 0:
        raise ConvertError("input of unknown rank")
    ir_axes = [axis_in(a, x.rank, x.layout) for a in axes]
    n = len(ir_axes)
    ints = np.iinfo(np.int64)
    value = cx.b.Slice(x.value, cx.const(np.full(n, -1, np.int64)).value,
                       cx.const(np.full(n, ints.min, np.int64)).value,
                       cx.const(np.asarray(ir_axes, np.int64)).value,
                       cx.const(np.full(n, -1, np.int64)).value)
    return x.like(value)
