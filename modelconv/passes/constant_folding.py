"""Fold nodes whose inputs are all constants into initializers.

    W[64,3,3,3] ─► Transpose ─► Conv          x ─► Shape ─► Gather(0) ─► Reshape(y, .)
    becomes
    W'[64,3,3,3] ─────────────► Conv          const [1] ──────────────► Reshape(y, .)

Nodes are evaluated with ONNX's reference implementation (no ML framework), so the
semantics are exactly the op's; Shape/Size of statically shaped values fold too. Folded
values keep the name of the value they replace.

Large weights are never densified here: a node reading a constant of more than
``LAZY_FROM_ELEMENTS`` elements folds only when it is a pure relayout of that one tensor
(Transpose, Reshape/Flatten/Squeeze/Unsqueeze, Identity), and then into an
``ir.LazyTensor`` that computes the result when the exporter writes it, one tensor at a
time; any other node reading it stays in the graph.

Two policies:
- default (the cleanup pipeline): an output may not outgrow the node's constant inputs
  (beyond a small allowance), and ops that can blow a small input up into a huge tensor
  (ConstantOfShape, Expand, Tile, Range, OneHot, Resize, Pad) never fold — the file stays small;
- ``allow_growth=True`` (exporters without lowerings for those ops, e.g. TFLite): they fold
  too, up to ``MAX_GROWN_ELEMENTS`` per output; their results are model constants either way.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator
from onnx_ir.passes import InPlacePass, PassResult

from modelconv.ir.arrays import StridedTensor
from modelconv.passes._edit import static_shape

#: outputs up to this many elements always fold; larger ones only if no bigger than inputs
MAX_FOLD_ELEMENTS = 1 << 16
#: never evaluate nodes whose constant inputs exceed this many elements in total
MAX_INPUT_ELEMENTS = 1 << 26
#: with allow_growth, the largest output that may be materialised
MAX_GROWN_ELEMENTS = 1 << 26
_NONDETERMINISTIC = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "DequantizeLinear", "QuantizeLinear",
}
#: constants above this many elements are folded only lazily (see the module docstring)
LAZY_FROM_ELEMENTS = MAX_FOLD_ELEMENTS
_RELAYOUT = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
_GROWING = {"ConstantOfShape", "Expand", "Tile", "Range", "OneHot", "Resize", "Upsample", "Pad"}


class FoldConstantsPass(InPlacePass):
    """Replace constant-input nodes of the default domain by their computed outputs."""

    def __init__(self, allow_growth: bool = False):
        super().__init__()
        self.allow_growth = allow_growth

    def call(self, model: ir.Model) -> PassResult:
        """Fold every foldable node of the main graph, in order."""
        modified = False
        graph = model.graph
        opset = model.opset_imports.get("", 21)
        skip = _NONDETERMINISTIC if self.allow_growth else _NONDETERMINISTIC | _GROWING
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type in skip:
                continue
            values = self._fold(node, opset)
            if values is None:
                continue
            for out, array in zip(node.outputs, values, strict=True):
                _install(graph, out, array)  # type: ignore[arg-type]
            graph.remove(node, safe=True)  # detaches inputs, so dead weights can go
            modified = True
        return PassResult(model, modified)

    def _fold(self, node: ir.Node, opset: int
              ) -> list[np.ndarray] | list[ir.TensorProtocol] | None:
        if node.op_type in ("Shape", "Size"):
            return _fold_shape(node)
        big = [v for v in node.inputs if v is not None and v.const_value is not None
               and v.const_value.size > LAZY_FROM_ELEMENTS]
        if big:
            return _lazy_relayout(node, big[0])
        inputs = _constant_inputs(node)
        if inputs is None:
            return None
        total = sum(a.size for a in inputs if a is not None)
        if total > MAX_INPUT_ELEMENTS:
            return None
        out = _evaluate(node, inputs, opset)
        if out is None:
            return None
        limit = MAX_GROWN_ELEMENTS if self.allow_growth else max(MAX_FOLD_ELEMENTS, total)
        if any(r.size > limit or r.dtype == object for r in out):
            return None
        return out


def _lazy_relayout(node: ir.Node, big: ir.Value) -> list[ir.TensorProtocol] | None:
    """``node``'s output as a lazy tensor when it only relayouts the large constant ``big``.

    The other inputs (a Reshape's shape) must be small constants. The output shape is
    worked out from the node's attributes and inputs (nothing is read); reading the
    tensor gives a transposed or reshaped view of the source's array.
    """
    if node.op_type not in _RELAYOUT or node.inputs[0] is not big or len(node.outputs) != 1:
        return None
    rest = _constant_inputs_small(node)
    if rest is None:
        return None
    source = big.const_value
    assert source is not None
    shape = _relayout_shape(node, list(source.shape.numpy()), rest)
    if shape is None:
        return None

    perm = ([int(p) for p in node.attributes.get_ints("perm", list(range(len(shape)))[::-1])]
            if node.op_type == "Transpose" else None)

    def compute() -> ir.TensorProtocol:
        array = np.asarray(source.numpy())
        # a view (no copy): writers copy it in row blocks, and a consumer that transposes
        # it back (TFLite's FULLY_CONNECTED) gets the file's pages again
        return StridedTensor(array.transpose(perm) if perm is not None else array.reshape(shape))

    return [ir.LazyTensor(compute, dtype=source.dtype, shape=ir.Shape(shape))]


def _constant_inputs_small(node: ir.Node) -> list[np.ndarray | None] | None:
    rest: list[np.ndarray | None] = []
    for value in node.inputs[1:]:
        if value is None:
            rest.append(None)
        elif value.const_value is None or value.const_value.size > MAX_FOLD_ELEMENTS:
            return None
        else:
            rest.append(np.asarray(value.const_value.numpy()))
    return rest


def _relayout_shape(node: ir.Node, dims: list[int], rest: list[np.ndarray | None]
                    ) -> list[int] | None:
    """The output shape of a relayout node of an input of shape ``dims``."""
    op = node.op_type
    size = math.prod(dims)
    if op == "Identity":
        return dims
    if op == "Transpose":
        perm = node.attributes.get_ints("perm", list(range(len(dims)))[::-1])
        return [dims[int(p)] for p in perm]
    if op == "Flatten":
        axis = node.attributes.get_int("axis", 1) % max(len(dims), 1)
        return [math.prod(dims[:axis]), math.prod(dims[axis:])]
    if op == "Reshape":
        if not rest or rest[0] is None or node.attributes.get_int("allowzero", False):
            return None
        target = [int(d) if d != 0 else dims[i] for i, d in enumerate(rest[0].tolist())]
        if target.count(-1) == 1:
            known = math.prod(d for d in target if d != -1)
            target[target.index(-1)] = size // known if known else 0
        return target if math.prod(target) == size and min(target, default=0) >= 0 else None
    axes_in = rest[0] if rest and rest[0] is not None else None
    axes = [int(a) for a in axes_in.tolist()] if axes_in is not None else \
        list(node.attributes.get_ints("axes", []))
    if op == "Squeeze":
        axes = [a % len(dims) for a in axes] if axes else [i for i, d in enumerate(dims)
                                                          if d == 1]
        return [d for i, d in enumerate(dims) if i not in axes]
    if op == "Unsqueeze" and axes:
        rank = len(dims) + len(axes)
        axes = sorted(a % rank for a in axes)
        out = list(dims)
        for a in axes:
            out.insert(a, 1)
        return out
    return None


def _constant_inputs(node: ir.Node) -> list[np.ndarray | None] | None:
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
           for a in node.attributes.values()):
        return None
    if any(v is not None and v.const_value is None for v in node.inputs):
        return None
    # sizes from the declared shapes, before anything is read (an external 9 GB weight)
    if sum(v.const_value.size for v in node.inputs
           if v is not None and v.const_value is not None) > MAX_INPUT_ELEMENTS:
        return None
    inputs: list[np.ndarray | None] = []
    for value in node.inputs:
        if value is None or value.const_value is None:
            inputs.append(None)
        else:
            inputs.append(np.asarray(value.const_value.numpy()))
    if not inputs and node.op_type != "Constant":
        return None
    return inputs


def _evaluate(node: ir.Node, inputs: list[np.ndarray | None], opset: int
              ) -> list[np.ndarray] | None:
    try:
        proto_node = ir.serde.serialize_node(node)
        names = list(proto_node.input)
        feeds = {n: a for n, a in zip(names, inputs, strict=True) if n and a is not None}
        graph = onnx.helper.make_graph(
            [proto_node], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None)
             for n in feeds],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in proto_node.output],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        with np.errstate(all="ignore"):  # log(0) = -inf is a value here, not a warning
            results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # an op the reference evaluator cannot run: leave it in the graph
        return None
    return [np.asarray(r) for r in results]


def _fold_shape(node: ir.Node) -> list[np.ndarray] | None:
    dims = static_shape(node.inputs[0])
    if dims is None:
        return None
    if node.op_type == "Size":
        return [np.asarray(math.prod(int(d) for d in dims), dtype=np.int64)]
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    return [np.asarray(dims[start:end], dtype=np.int64)]


def _install(graph: ir.Graph, out: ir.Value, array: np.ndarray | ir.TensorProtocol) -> None:
    """Make ``array`` (or a lazy tensor) an initializer that takes over ``out``'s name and uses."""
    name = out.name or "folded"
    if isinstance(array, np.ndarray) or np.isscalar(array):
        array = np.array(array, order="C")  # not ascontiguousarray: it makes scalars 1-D
        tensor: ir.TensorProtocol = ir.tensor(array, name=name)
    else:
        tensor = array
        tensor.name = name
    const = ir.Value(name=name, shape=ir.Shape(list(tensor.shape.numpy())),
                     type=ir.TensorType(tensor.dtype), const_value=tensor)
    out.replace_all_uses_with(const, replace_graph_outputs=True)
    out.name = f"{name}__folded"
    const.name = name
    graph.register_initializer(const)
