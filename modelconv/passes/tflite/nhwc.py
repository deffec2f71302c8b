"""Move a channels-first (NCHW) graph to channels-last (NHWC) in one forward pass.

Every value gets a *layout*: a permutation ``P`` such that the tensor stored at run time
is ``logical.transpose(P)`` (identity = the ONNX layout). Walking the nodes in topological
order, layout-sensitive ops (Conv, ConvTranspose, pools, Resize, BatchNormalization, ...)
ask for their data input in channels-last order and produce channels-last outputs; they
are moved to the ``modelconv.nhwc`` domain, which means "same op, data tensors are
channels-last, weights keep the ONNX layout". Layout-agnostic ops (element-wise chains,
Concat/Softmax/Reduce*/Slice/Pad/Split/Gather/Cumsum/Tile along an axis) keep whatever
layout their inputs have: their axis attributes and constant operands are permuted
instead. Existing Transpose nodes are absorbed into the layout (pairwise cancellation)
and become Identity. A conversion is only materialised where an op needs the logical
layout (MatMul, Gemm, a Reshape that really reorders data, graph outputs); when it only
moves size-1 dims (``N,C,1,1 -> N,1,1,C``) it is a Reshape, not a Transpose.

Before (ONNX, NCHW)::

    x[N,3,H,W] -> Conv -> Relu -> GlobalAveragePool -> Conv -> Sigmoid -> Mul(., relu) -> Add
               -> Flatten -> Gemm -> y

After (values stored NHWC, one boundary transpose)::

    x -> Transpose(0,2,3,1) -> nhwc.Conv -> Relu -> nhwc.GlobalAveragePool -> nhwc.Conv
      -> Sigmoid -> Mul -> Add -> Reshape[N,C] -> Gemm -> y

With ``nhwc_io=True`` rank-4 image inputs (those reaching a Conv/pool through element-wise
ops only) and rank-4 outputs are channels-last too (no boundary transposes); their shapes
change accordingly. Inputs a source already declares NHWC (Keras) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

from modelconv.passes._edit import (
    attr,
    const_array,
    make_node,
    new_const,
    static_shape,
    unique_name,
)
from modelconv.passes.tflite.batched_matmul import UnflattenBatchMatMulPass
from modelconv.passes.tflite.layouts import Perm, batch_order, reshape_layout

NHWC_DOMAIN = "modelconv.nhwc"

SENSITIVE = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "InstanceNormalization", "Resize", "DepthToSpace", "SpaceToDepth",
    "LRN", "LpPool",
}
ELEMENTWISE = {
    "Abs", "Acos", "Add", "And", "Asin", "Atan", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Div",
    "Elu", "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid",
    "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max",
    "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal",
    "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt",
    "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Where", "Xor", "Cast", "BitwiseNot",
    "Dropout",
}
REDUCE = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum",
}
RESHAPES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def channels_last(rank: int) -> Perm:
    """The channels-last permutation for ``rank`` (4 -> (0, 2, 3, 1))."""
    return (0, *range(2, rank), 1)


def _identity(rank: int) -> Perm:
    return tuple(range(rank))


def _inverse(perm: Sequence[int]) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


class NhwcLayoutPass(ir.passes.InPlacePass):
    """Assign channels-last layouts and cancel transposes (see the module docstring)."""

    def __init__(self, nhwc_io: bool = False) -> None:
        super().__init__()
        self.nhwc_io = nhwc_io

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Run the pass on ``model.graph``."""
        UnflattenBatchMatMulPass()(model)  # a flattened-batch MatMul hides its layout
        _LayoutRewriter(model.graph, self.nhwc_io).run()
        model.graph.opset_imports.setdefault(NHWC_DOMAIN, 1)
        return ir.passes.PassResult(model, modified=True)


class _LayoutRewriter:
    def __init__(self, graph: ir.Graph, nhwc_io: bool) -> None:
        self.graph = graph
        self.nhwc_io = nhwc_io
        self.layout: dict[ir.Value, Perm] = {}
        self.logical: dict[ir.Value, list[int]] = {}
        self.cache: dict[tuple[ir.Value, Perm], ir.Value] = {}
        self.absorbed: dict[ir.Node, Perm] = {}  # Transpose nodes turned into layouts: perm
        self.handlers: dict[str, Callable[[ir.Node], None]] = {
            "Concat": self._concat, "Softmax": self._single_axis, "LogSoftmax": self._single_axis,
            "Hardmax": self._single_axis, "Split": self._split, "ArgMax": self._argmax,
            "ArgMin": self._argmax, "Slice": self._slice, "Pad": self._pad, "CumSum": self._cumsum,
            "Gather": self._gather, "Tile": self._tile, "Expand": self._expand,
            "Transpose": self._transpose, "LayerNormalization": self._layernorm,
            "MatMul": self._matmul,
            "QuantizeLinear": self._single_axis, "DequantizeLinear": self._single_axis,
        }

    # -- bookkeeping --------------------------------------------------------------
    def shape(self, v: ir.Value) -> list[int] | None:
        """Logical (ONNX-layout) static shape of ``v``."""
        return self.logical.get(v) or static_shape(v)

    def perm(self, v: ir.Value) -> Perm | None:
        """Current layout of ``v`` (identity when canonical)."""
        shape = self.shape(v)
        if shape is None:
            return None
        return self.layout.get(v, _identity(len(shape)))

    def set_layout(self, v: ir.Value, perm: Perm) -> None:
        """Record ``perm`` for ``v`` and store its physical shape."""
        shape = self.shape(v)
        if shape is None:
            return
        self.logical[v] = shape
        if perm == _identity(len(shape)):
            self.layout.pop(v, None)
        else:
            self.layout[v] = perm
        v.shape = ir.Shape([shape[p] for p in perm])

    def convert(self, v: ir.Value, target: Perm, insert: Callable[[ir.Node], None]) -> ir.Value:
        """``v`` stored in layout ``target`` (inserting a Transpose/Reshape if needed)."""
        cur = self.perm(v)
        if cur is None or cur == target:
            return v
        key = (v, target)
        if key in self.cache:
            return self.cache[key]
        shape = self.shape(v)
        assert shape is not None
        phys = [shape[p] for p in target]
        arr = const_array(v)
        if arr is not None:
            out = new_const(self.graph, np.transpose(arr, target), f"{v.name}_perm")
        elif (through := self._split_through(v, target, insert)
              or self._transpose_through(v, target, insert)) is not None:
            return through
        else:
            inv = _inverse(cur)
            t = [inv[x] for x in target]
            if _moves_only_unit_dims(t, [shape[p] for p in cur]):
                shp = new_const(self.graph, np.asarray(phys, np.int64), f"{v.name}_shape")
                node = make_node(self.graph, "Reshape", [v, shp], None, like=v.producer(),
                                 out_name=f"{v.name}_relayout", shape=phys, dtype=v.dtype)
            else:
                node = make_node(self.graph, "Transpose", [v], {"perm": t}, like=v.producer(),
                                 out_name=f"{v.name}_transposed", shape=phys, dtype=v.dtype)
            insert(node)
            out = node.outputs[0]
        self.logical[out] = list(shape)
        if target != _identity(len(shape)):
            self.layout[out] = target
        self.cache[key] = out
        return out

    def _split_through(self, v: ir.Value, target: Perm,
                       insert: Callable[[ir.Node], None]) -> ir.Value | None:
        """``v``, an output of a Split of a permuted tensor, in layout ``target``, made by
        converting the Split's input once and splitting that again: the pieces of one tensor
        (q, k and v of an attention) then cost one Transpose, not one each."""
        node = v.producer()
        if node is None or node.op_type != "Split" or node.domain not in ("", "ai.onnx") \
                or len(node.outputs) < 2 or node.inputs[0] is None:
            return None
        x = node.inputs[0]
        cur = self.perm(x)
        if cur is None or cur != self.perm(v) or any(
                i > 1 and u is not None for i, u in enumerate(node.inputs)):
            return None
        axis = cur[attr(node, "axis", 0) % len(cur)]
        src = self.convert(x, target, insert)
        attrs = {k: a.value for k, a in node.attributes.items() if k != "axis"}
        attrs["axis"] = target.index(axis)
        split = ir.node("Split", [src, *node.inputs[1:2]], attributes=attrs,
                        num_outputs=len(node.outputs), metadata_props=dict(node.metadata_props),
                        name=unique_name(self.graph, f"{node.name}_relayout"))
        insert(split)
        for old, new in zip(node.outputs, split.outputs, strict=True):
            shape = self.shape(old)
            new.name = unique_name(self.graph, f"{old.name}_relayout")
            new.type = old.type
            if shape is not None:
                self.logical[old] = shape
                self.logical[new] = list(shape)
                new.shape = ir.Shape([shape[a] for a in target])
                if target != _identity(len(shape)):
                    self.layout[new] = target
            self.cache[(old, target)] = new
        return self.cache[(v, target)]

    def _transpose_through(self, v: ir.Value, target: Perm,
                           insert: Callable[[ir.Node], None]) -> ir.Value | None:
        """``v``, the output of a source Transpose of a Split output, in layout ``target``,
        by the Split's shared conversion (:meth:`_split_through`): LeViT permutes q, k and v
        one by one after splitting them, and then they still cost one Transpose together."""
        node = v.producer()
        q = self.absorbed.get(node) if node is not None else None
        if node is None or q is None or not self._converts_cheaply(node.inputs[0],
                                                                   tuple(q[a] for a in target)):
            return None
        u = node.inputs[0]
        assert u is not None
        src = self.convert(u, tuple(q[a] for a in target), insert)
        shape = self.shape(v)
        assert shape is not None
        alias = make_node(self.graph, "Identity", [src], None, like=node,
                          out_name=f"{v.name}_relayout", shape=[shape[a] for a in target],
                          dtype=v.dtype)
        insert(alias)
        out = alias.outputs[0]
        self.logical[out] = list(shape)
        if target != _identity(len(shape)):
            self.layout[out] = target
        self.cache[(v, target)] = out
        return out

    def _converts_cheaply(self, v: ir.Value | None, target: Perm, made: bool = False) -> bool:
        """True when ``v`` in layout ``target`` exists or comes from a Split's shared
        conversion (or a source Transpose of one); with ``made``, only when that Split's
        input has already been converted (nothing new to transpose)."""
        if v is None or self.perm(v) == target or (v, target) in self.cache:
            return True
        node = v.producer()
        if node is None:
            return False
        if node.op_type == "Split" and node.domain in ("", "ai.onnx") and len(node.outputs) > 1:
            x = node.inputs[0]
            if x is None or self.perm(x) != self.perm(v):
                return False
            return not made or (x, target) in self.cache or self.perm(x) == target
        q = self.absorbed.get(node)
        return q is not None and self._converts_cheaply(node.inputs[0],
                                                        tuple(q[a] for a in target), made)

    def _before(self, node: ir.Node) -> Callable[[ir.Node], None]:
        return lambda new: self.graph.insert_before(node, new)

    def set_input(self, node: ir.Node, i: int, v: ir.Value | None) -> None:
        """Set input ``i`` of ``node`` (growing the input list)."""
        if i >= len(node.inputs):
            node.resize_inputs(i + 1)
        node.replace_input_with(i, v)

    def const_input(self, node: ir.Node, i: int, array: np.ndarray, hint: str) -> None:
        """Replace input ``i`` by a new constant."""
        self.set_input(node, i, new_const(self.graph, array, f"{node.name}_{hint}"))

    # -- driver -------------------------------------------------------------------
    def run(self) -> None:
        """Visit all nodes in order, then restore output layouts."""
        if self.nhwc_io:
            for v in self.graph.inputs:
                shape = static_shape(v)
                if shape is not None and len(shape) == 4 and _feeds_spatial_op(v):
                    self.set_layout(v, channels_last(4))
        for node in list(self.graph):
            self.visit(node)
        outputs = self.graph.outputs
        for i, v in enumerate(list(outputs)):
            perm = self.perm(v)
            if perm is None or perm == _identity(len(perm)):
                continue
            if self.nhwc_io and perm == channels_last(len(perm)):
                continue
            name = v.name
            out = self.convert(v, _identity(len(perm)), self.graph.append)
            v.name = f"{name}_nhwc"
            out.name = name
            outputs[i] = out

    def visit(self, node: ir.Node) -> None:
        """Dispatch ``node`` to its layout rule."""
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            self._default(node)
        elif op in SENSITIVE:
            self._sensitive(node)
        elif op in ELEMENTWISE:
            self._elementwise(node)
        elif op in REDUCE:
            self._reduce(node)
        elif op in RESHAPES:
            self._reshape(node)
        elif op in self.handlers:
            self.handlers[op](node)
        else:
            self._default(node)

    def _default(self, node: ir.Node) -> None:
        for i, v in enumerate(node.inputs):
            if v is None or const_array(v) is not None:
                continue
            p = self.perm(v)
            if p is not None and p != _identity(len(p)):
                self.set_input(node, i, self.convert(v, _identity(len(p)), self._before(node)))

    def _data_perm(self, node: ir.Node) -> Perm | None:
        """Layout of the first permuted non-constant input (None: all canonical)."""
        for v in node.inputs:
            if v is None or const_array(v) is not None:
                continue
            p = self.perm(v)
            if p is not None and p != _identity(len(p)):
                return p
        return None

    def _same_layout_inputs(self, node: ir.Node, target: Perm) -> bool:
        """Bring every data input to ``target``; False if that is impossible."""
        rank = len(target)
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            arr = const_array(v)
            shape = self.shape(v)
            if arr is not None:
                if arr.size == 1 or (arr.ndim == rank and target == _identity(rank)):
                    continue
                if arr.ndim > rank:
                    return False
                padded = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
                self.const_input(node, i, np.transpose(padded, target), "perm")
            elif shape is None:
                return False
            elif len(shape) == rank:
                self.set_input(node, i, self.convert(v, target, self._before(node)))
            elif len(shape) == 0 or int(np.prod(shape)) == 1:
                continue
            else:
                return False
        return True

    # -- categories ---------------------------------------------------------------
    def _cheapest_perm(self, node: ir.Node) -> Perm | None:
        """The layout of a full-rank data input that the fewest other data inputs must be
        transposed to (a conversion already made, or one that only moves size-1 dims, is
        free); ties go to the canonical layout, then to the first. None when every data
        input is canonical."""
        first = self._data_perm(node)
        if first is None:
            return None
        rank = len(first)
        data = [v for v in node.inputs if v is not None and const_array(v) is None
                and (s := self.shape(v)) is not None and len(s) == rank]
        candidates = list(dict.fromkeys(p for v in data if (p := self.perm(v)) is not None))

        def cost(target: Perm) -> int:
            return sum(1 for v in data if self._needs_transpose(v, target))

        best = min(cost(c) for c in candidates)
        if cost(_identity(rank)) == best and _identity(rank) in candidates:
            return None
        return next(c for c in candidates if cost(c) == best)

    def _needs_transpose(self, v: ir.Value, target: Perm) -> bool:
        """True when bringing ``v`` to ``target`` takes a new Transpose."""
        cur, shape = self.perm(v), self.shape(v)
        if cur is None or shape is None or cur == target or (v, target) in self.cache:
            return False
        inv = _inverse(cur)
        return not _moves_only_unit_dims([inv[x] for x in target], [shape[p] for p in cur])

    def _elementwise(self, node: ir.Node) -> None:
        target = self._cheapest_perm(node)
        out_shape = self.shape(node.outputs[0])
        if target is None or out_shape is None or len(target) != len(out_shape):
            self._default(node)
            return
        if not self._same_layout_inputs(node, target):
            self._default(node)
            return
        for out in node.outputs:
            self.set_layout(out, target)

    def _sensitive(self, node: ir.Node) -> None:
        x = node.inputs[0]
        shape = self.shape(x) if x is not None else None
        if x is None or shape is None or len(shape) not in (3, 4):
            self._default(node)
            return
        if node.op_type in ("BatchNormalization", "MaxPool") and len(node.outputs) > 1:
            self._default(node)  # statistics / indices outputs are defined in NCHW order
            return
        cl = channels_last(len(shape))
        if node.op_type == "Resize" and not self._resize_params(node, cl):
            self._default(node)
            return
        self.set_input(node, 0, self.convert(x, cl, self._before(node)))
        node.domain = NHWC_DOMAIN
        self.set_layout(node.outputs[0], cl)

    def _resize_params(self, node: ir.Node, cl: Perm) -> bool:
        """Permute Resize's constant scales/sizes; False when they are not static."""
        if attr(node, "axes") is not None or len(cl) != 4:
            return False
        roi = node.inputs[1] if len(node.inputs) > 1 else None
        if roi is not None and const_array(roi) is None:  # a run-time roi stays NCHW-ordered
            return False
        for i in (2, 3):
            if i < len(node.inputs) and node.inputs[i] is not None:
                arr = const_array(node.inputs[i])
                if arr is None:
                    return False
                if arr.size:
                    self.const_input(node, i, arr[list(cl)], "nhwc")
        return True

    def _concat(self, node: ir.Node) -> None:
        target = self._cheapest_perm(node)
        if target is None or not self._same_layout_inputs(node, target):
            self._default(node)
            return
        axis = attr(node, "axis") % len(target)
        node.attributes["axis"] = ir.AttrInt64("axis", target.index(axis))
        self.set_layout(node.outputs[0], target)

    def _single_axis(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        default = {"Softmax": -1, "LogSoftmax": -1, "Hardmax": -1, "QuantizeLinear": 1,
                   "DequantizeLinear": 1}.get(node.op_type, 0)
        axis = attr(node, "axis", default) % len(p)
        node.attributes["axis"] = ir.AttrInt64("axis", p.index(axis))
        for out in node.outputs:
            self.set_layout(out, p)

    def _from_transpose(self, v: ir.Value, depth: int = 32) -> bool:
        """True when the layout of ``v`` comes from a Transpose of the source graph (an
        attention's head split), not from a channels-last op: followed back through the first
        permuted input of each layout-agnostic op."""
        node = v.producer()
        while node is not None and depth > 0:
            if node in self.absorbed:
                return True
            if node.domain not in ("", "ai.onnx"):
                return False
            src = next((u for u in node.inputs if u is not None and const_array(u) is None
                        and (q := self.perm(u)) is not None and q != _identity(len(q))), None)
            node = src.producer() if src is not None else None
            depth -= 1
        return False

    def _split(self, node: ir.Node) -> None:
        """Split keeps a channels-last layout; a tensor permuted by the graph's own Transpose
        (the q/k/v of an attention) is brought to its logical layout once, before the Split,
        so the pieces need no Transpose each."""
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if x is not None and p is not None and p != _identity(len(p)) and self._from_transpose(x):
            self._default(node)
            return
        self._single_axis(node)

    def _kept_perm(self, p: Perm, removed: set[int]) -> Perm:
        kept = [a for a in p if a not in removed]
        order = sorted(kept)
        return tuple(order.index(a) for a in kept)

    def _reduce(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        from_input = len(node.inputs) > 1 and node.inputs[1] is not None
        axes_arr = const_array(node.inputs[1]) if from_input else None
        axes = [int(a) for a in axes_arr] if axes_arr is not None else attr(node, "axes")
        if from_input and axes_arr is None:
            self._default(node)
            return
        if not axes:
            axes = [] if attr(node, "noop_with_empty_axes", 0) else list(range(len(p)))
        axes = [a % len(p) for a in axes]
        new_axes = sorted(p.index(a) for a in axes)
        if from_input:
            self.const_input(node, 1, np.asarray(new_axes, np.int64), "axes")
        else:
            node.attributes["axes"] = ir.AttrInt64s("axes", new_axes)
        keep = attr(node, "keepdims", 1)
        self.set_layout(node.outputs[0], p if keep else self._kept_perm(p, set(axes)))

    def _argmax(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        axis = attr(node, "axis", 0) % len(p)
        node.attributes["axis"] = ir.AttrInt64("axis", p.index(axis))
        keep = attr(node, "keepdims", 1)
        self.set_layout(node.outputs[0], p if keep else self._kept_perm(p, {axis}))

    def _one_of_pieces(self, node: ir.Node) -> bool:
        """True when ``node`` (a Slice or Gather) is one of several pieces cut from a tensor
        permuted by the graph's own Transpose: q, k and v taken by ``qkv[0]``, ``qkv[1]``,
        ``qkv[2]`` (``select``s). As for a Split, the tensor is then brought to its logical
        layout once and cut there, so the pieces need no Transpose each."""
        x = node.inputs[0]
        shape = self.shape(x) if x is not None else None
        if x is None or shape is None or not self._from_transpose(x):
            return False
        if (x, _identity(len(shape))) in self.cache:  # an earlier piece converted it
            return _feeds_matmul(node.outputs[0])
        pieces = {u.node for u in x.uses() if u.idx == 0 and u.node.op_type in ("Slice", "Gather")
                  and u.node.domain in ("", "ai.onnx")}
        return len(pieces) > 1 and all(_feeds_matmul(p.outputs[0]) for p in pieces)

    def _slice(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        if self._one_of_pieces(node):
            self._default(node)
            return
        params = [const_array(v) for v in node.inputs[1:]]
        if any(a is None for a in params[:2]) or (
            len(params) > 2 and node.inputs[3] is not None and params[2] is None
        ):
            self._default(node)
            return
        starts = params[0]
        assert starts is not None
        axes_arr = params[2] if len(params) > 2 and params[2] is not None else None
        axes = [int(a) % len(p) for a in (axes_arr if axes_arr is not None
                                          else range(len(starts)))]
        self.const_input(node, 3, np.asarray([p.index(a) for a in axes], np.int64), "axes")
        self.set_layout(node.outputs[0], p)

    def _pad(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        pads = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
        if pads is None or (len(node.inputs) > 3 and node.inputs[3] is not None):
            self._default(node)
            return
        r = len(p)
        begin, end = pads[:r], pads[r:]
        new = np.concatenate([begin[list(p)], end[list(p)]]).astype(np.int64)
        self.const_input(node, 1, new, "pads")
        self.set_layout(node.outputs[0], p)

    def _cumsum(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        axis = const_array(node.inputs[1])
        if axis is None:
            self._default(node)
            return
        new_axis = p.index(int(axis.reshape(-1)[0]) % len(p))
        self.const_input(node, 1, np.asarray(new_axis, axis.dtype), "axis")
        self.set_layout(node.outputs[0], p)

    def _gather(self, node: ir.Node) -> None:
        x, idx = node.inputs[0], node.inputs[1]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)) or idx is None or self._one_of_pieces(node):
            self._default(node)
            return
        idx_shape = self.shape(idx)
        if idx_shape is None or len(idx_shape) > 1 or self.perm(idx) != _identity(len(idx_shape)):
            self._default(node)
            return
        axis = attr(node, "axis", 0) % len(p)
        node.attributes["axis"] = ir.AttrInt64("axis", p.index(axis))
        self.set_layout(node.outputs[0], p if idx_shape else self._kept_perm(p, {axis}))

    def _tile(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        reps = const_array(node.inputs[1])
        if reps is None:
            self._default(node)
            return
        self.const_input(node, 1, reps[list(p)].astype(np.int64), "repeats")
        self.set_layout(node.outputs[0], p)

    def _expand(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        shape = const_array(node.inputs[1])
        if shape is None or len(shape) != len(p):
            self._default(node)
            return
        self.const_input(node, 1, shape[list(p)].astype(np.int64), "shape")
        self.set_layout(node.outputs[0], p)

    def _transpose(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None:
            self._default(node)
            return
        q = attr(node, "perm") or list(reversed(range(len(p))))
        q_inv = _inverse(q)
        r = tuple(q_inv[a] for a in p)
        node.op_type = "Identity"
        node.attributes.pop("perm", None)
        self.absorbed[node] = tuple(q)
        out = node.outputs[0]
        out_shape = self.shape(out)
        if out_shape is not None:
            self.logical[out] = out_shape
        self.set_layout(out, r)

    def _layernorm(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        if p is None or p == _identity(len(p)):
            return
        axis = attr(node, "axis", -1) % len(p)
        if tuple(p[axis:]) != tuple(range(axis, len(p))):
            self._default(node)
            return
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            self._default(node)  # mean / inv-std outputs have reduced logical shapes
            return
        self.set_layout(node.outputs[0], p)

    def _matmul(self, node: ir.Node) -> None:
        """MatMul reads operands stored with their last two dims swapped (``adj_x``/``adj_y``
        of BATCH_MATMUL, as ``modelconv.nhwc`` MatMul) and operands whose batch dims are
        permuted the same way (the output keeps that order); a constant 2-D weight lets the
        left operand keep any layout that leaves its last dim last (FULLY_CONNECTED)."""
        a, b = node.inputs[0], node.inputs[1]
        pa, pb = (self.perm(v) if v is not None else None for v in (a, b))
        out_shape = self.shape(node.outputs[0])
        if a is None or b is None or pa is None or pb is None or out_shape is None:
            self._default(node)
            return
        w = const_array(b)
        if w is not None and w.ndim == 2 and len(pa) >= 2:
            if pa[-1] == len(pa) - 1 and pa != _identity(len(pa)):
                self.set_layout(node.outputs[0], pa)
            else:
                self._default(node)
            return
        batch = batch_order(pa) if const_array(a) is None else None
        batch_b = batch_order(pb) if w is None else None
        rank = len(out_shape)
        if len(pa) != rank or len(pb) != rank or rank < 2 or (
                batch is not None and batch_b is not None and batch != batch_b):
            self._default(node)
            return
        sigma = batch or batch_b or _identity(rank - 2)
        canon = (*sigma, rank - 2, rank - 1)
        adj = []
        swapped = (*sigma, rank - 1, rank - 2)
        for i, (v, pv) in enumerate(((a, pa), (b, pb))):
            runtime = const_array(v) is None
            if runtime and (pv == swapped or (pv != canon and not self._converts_cheaply(
                    v, canon, made=True) and self._converts_cheaply(v, swapped, made=True))):
                self.set_input(node, i, self.convert(v, swapped, self._before(node)))
                adj.append(1)
            else:
                self.set_input(node, i, self.convert(v, canon, self._before(node)))
                adj.append(0)
        if any(adj):
            node.domain = NHWC_DOMAIN
            node.attributes["adj_x"] = ir.AttrInt64("adj_x", adj[0])
            node.attributes["adj_y"] = ir.AttrInt64("adj_y", adj[1])
        self.set_layout(node.outputs[0], canon)

    def _flatten_into_fc(self, node: ir.Node, p: Perm, in_shape: list[int],
                         out_shape: list[int]) -> bool:
        """Flatten [N, ...] -> [N, K] read only by FC layers: permute their weight rows instead.

        The physical (channels-last) tensor is flattened as is, and each Gemm/MatMul's
        constant weight gets its K rows reordered to match, so no Transpose is needed.
        """
        out = node.outputs[0]
        if p[0] != 0 or len(out_shape) != 2 or out_shape[0] != in_shape[0] or out.is_graph_output():
            return False
        users = [u.node for u in out.uses()]
        weights = [_fc_weight(u, out) for u in users]
        if not users or any(w is None for w in weights):
            return False
        rows = _flatten_rows(in_shape, p)
        for user, found in zip(users, weights, strict=True):
            assert found is not None
            w, k_axis = found
            self.const_input(user, 1, np.take(w, rows, axis=k_axis), "nhwc_rows")
        return True

    def _reshape(self, node: ir.Node) -> None:
        x = node.inputs[0]
        p = self.perm(x) if x is not None else None
        out_shape = self.shape(node.outputs[0])
        if x is None or p is None or p == _identity(len(p)) or out_shape is None:
            return
        in_shape = self.shape(x)
        assert in_shape is not None
        q = reshape_layout(in_shape, out_shape, p)
        if q is None and not self._flatten_into_fc(node, p, in_shape, out_shape):
            self._default(node)
            return
        node.op_type = "Reshape"
        for name in list(node.attributes):
            node.attributes.pop(name)
        phys = out_shape if q is None else [out_shape[a] for a in q]
        shape_v = new_const(self.graph, np.asarray(phys, np.int64), f"{node.name}_shape")
        node.resize_inputs(2)
        node.replace_input_with(1, shape_v)
        if q is not None:
            self.set_layout(node.outputs[0], q)


def _feeds_spatial_op(value: ir.Value, depth: int = 4) -> bool:
    """True when ``value`` reaches a layout-sensitive op through element-wise ops only.

    Decides which rank-4 inputs ``nhwc_io`` turns channels-last: an image input feeding a
    Conv (maybe after normalisation) does; a mask, or an input that is already NHWC and
    transposed by the graph itself (Keras sources), does not.
    """
    if value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16) or depth < 0:
        return False
    for use in value.uses():
        node = use.node
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in SENSITIVE and use.idx == 0:
            return True
        if node.op_type in ELEMENTWISE and any(
            _feeds_spatial_op(out, depth - 1) for out in node.outputs
        ):
            return True
    return False


def _feeds_matmul(value: ir.Value, depth: int = 3) -> bool:
    """True when ``value`` reaches a MatMul through reshapes and Transposes only (an
    attention's q, k or v; not a channel split feeding convolutions)."""
    for use in value.uses():
        node = use.node
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "MatMul" or (depth > 0 and use.idx == 0 and node.op_type in (
                *RESHAPES, "Transpose") and _feeds_matmul(node.outputs[0], depth - 1)):
            return True
    return False


def _fc_weight(node: ir.Node, x: ir.Value) -> tuple[np.ndarray, int] | None:
    """Constant weight of a Gemm/MatMul reading ``x`` as its left operand, and its K axis."""
    if node.domain not in ("", "ai.onnx") or len(node.inputs) < 2 or node.inputs[0] is not x:
        return None
    w = const_array(node.inputs[1])
    if w is None or w.ndim != 2 or x in node.inputs[1:]:
        return None
    if node.op_type == "MatMul":
        return w, 0
    if node.op_type == "Gemm" and not attr(node, "transA", 0):
        return w, 1 if attr(node, "transB", 0) else 0
    return None


def _flatten_rows(in_shape: Sequence[int], p: Perm) -> np.ndarray:
    """Logical flat index of each element of a flattened channels-last tensor."""
    logical = list(in_shape[1:])
    order = np.arange(int(np.prod(logical))).reshape(logical)
    return np.transpose(order, [a - 1 for a in p[1:]]).reshape(-1)


def _moves_only_unit_dims(perm: Sequence[int], shape: Sequence[int]) -> bool:
    """True when ``transpose(shape, perm)`` keeps the order of the non-1 dims (a reshape)."""
    order = [p for p in perm if shape[p] != 1]
    return order == sorted(order)
