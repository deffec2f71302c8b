"""GraphBuilder: the one way importers emit IR nodes.

Every node the builder creates carries ``source_name`` in its metadata (the Keras layer,
torch module path / FX node or TF node it came from), so errors and the verifier can
point at the user's model. Names are generated from counters, so building the same
model twice gives the same names (byte-identical output).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.ir.arrays import StridedTensor

DEFAULT_OPSET = 21
SOURCE_KEY = "source_name"
#: source layers whose ops a fusion pass folded into this node (comma-separated)
FUSED_KEY = "fused_from"


def source_name_of(node: ir.Node) -> str | None:
    """The source location recorded on ``node``, if any."""
    return node.metadata_props.get(SOURCE_KEY)


class GraphBuilder:
    """Incrementally builds an onnx_ir graph with source-location metadata."""

    def __init__(self, name: str = "main", opset: int = DEFAULT_OPSET):
        self.name = name
        self.opset = opset
        self.opset_imports: dict[str, int] = {"": opset}
        self.inputs: list[ir.Value] = []
        self.outputs: list[ir.Value] = []
        self.nodes: list[ir.Node] = []
        self.initializers: dict[str, ir.Value] = {}
        self._source: str | None = None
        self._names: dict[str, int] = {}
        self._used: set[str] = set()
        self._const_cache: dict[tuple[str, tuple[int, ...], bytes], ir.Value] = {}

    # -- naming ---------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        """A graph-unique name derived from ``hint`` (``hint``, ``hint_1``, ... skipping any
        name already handed out, so a hint ``x_1`` and a second ``x`` never collide)."""
        hint = hint or "v"
        count = self._names.get(hint, 0)
        name = hint if count == 0 else f"{hint}_{count}"
        while name in self._used:
            count += 1
            name = f"{hint}_{count}"
        self._names[hint] = count + 1
        self._used.add(name)
        return name

    @contextlib.contextmanager
    def source(self, name: str | None) -> Iterator[None]:
        """Tag every node emitted inside the block with ``source_name=name``."""
        previous, self._source = self._source, name
        try:
            yield
        finally:
            self._source = previous

    @property
    def current_source(self) -> str | None:
        """The source name nodes are currently tagged with."""
        return self._source

    # -- graph pieces -----------------------------------------------------------
    def add_input(
        self, name: str, dtype: ir.DataType | np.dtype | type, shape: Sequence[int | str | None]
    ) -> ir.Value:
        """Declare a graph input; ``None``/str dims are symbolic."""
        value = ir.val(self.unique_name(name), _as_dtype(dtype), list(shape))
        self.inputs.append(value)
        return value

    def initializer(self, array: np.ndarray | Any, name: str = "const") -> ir.Value:
        """Add ``array`` as a named initializer (weights)."""
        if isinstance(array, np.ndarray) or np.isscalar(array):
            arr = np.asarray(array)
            # a strided view (a transposed weight mapped from the source file) stays a view:
            # it is copied block by block when written, never held as a second copy
            tensor: Any = (StridedTensor(arr) if arr.ndim and not arr.flags.c_contiguous
                           else ir.tensor(arr, name=None))
            dtype, shape = ir.DataType.from_numpy(arr.dtype), list(arr.shape)
        else:  # an ir tensor (lazy / external / torch-backed)
            tensor, dtype, shape = array, array.dtype, list(array.shape)
        value_name = self.unique_name(name)
        tensor.name = value_name
        value = ir.Value(name=value_name, shape=ir.Shape(shape), type=ir.TensorType(dtype))
        value.const_value = tensor
        self.initializers[value_name] = value
        return value

    def const(self, value: Any, dtype: np.dtype | type | None = None, name: str = "c") -> ir.Value:
        """A small constant, shared between uses with the same dtype, shape and bytes."""
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if arr.size <= 64 and key in self._const_cache:
            return self._const_cache[key]
        out = self.initializer(arr, name)
        if arr.size <= 64:
            self._const_cache[key] = out
        return out

    def op(
        self,
        op_type: str,
        inputs: Sequence[ir.Value | None],
        attrs: Mapping[str, Any] | None = None,
        *,
        num_outputs: int = 1,
        domain: str = "",
        name: str | None = None,
        **kw_attrs: Any,
    ) -> Any:
        """Emit one ONNX node; returns its output Value (or a tuple if num_outputs > 1)."""
        attributes = {k: v for k, v in {**(attrs or {}), **kw_attrs}.items() if v is not None}
        node_name = self.unique_name(name or op_type)
        metadata = {SOURCE_KEY: self._source} if self._source else None
        node = ir.node(
            op_type,
            list(inputs),
            attributes=attributes,
            domain=domain,
            num_outputs=num_outputs,
            name=node_name,
            metadata_props=metadata,
        )
        for i, out in enumerate(node.outputs):
            out.name = self.unique_name(node_name if num_outputs == 1 else f"{node_name}_{i}")
        self.nodes.append(node)
        return node.outputs[0] if num_outputs == 1 else tuple(node.outputs)

    def __getattr__(self, op_type: str) -> Any:
        """``b.Relu(x)`` is ``b.op("Relu", [x])``; capitalised names only."""
        if not op_type[:1].isupper():
            raise AttributeError(op_type)

        def emit(*inputs: ir.Value | None, **attrs: Any) -> Any:
            return self.op(op_type, inputs, **attrs)

        return emit

    def set_outputs(self, values: Sequence[ir.Value], names: Sequence[str] | None = None) -> None:
        """Mark graph outputs, renaming them to ``names`` when given.

        A value used twice as output, or a graph input used as output, is routed
        through Identity so each output has its own name.
        """
        self.outputs = []
        for i, value in enumerate(values):
            if value in self.outputs or value in self.inputs or value.const_value is not None:
                value = self.op("Identity", [value])
            if names is not None:
                value.name = self.unique_name(names[i])
            self.outputs.append(value)

    def build(self, *, producer: str = "modelconv", doc: str | None = None) -> ir.Model:
        """The finished model (ir_version 10)."""
        graph = ir.Graph(
            self.inputs,
            self.outputs,
            nodes=self.nodes,
            initializers=list(self.initializers.values()),
            opset_imports=dict(self.opset_imports),
            name=self.name,
            doc_string=doc,
        )
        from modelconv._version import __version__

        return ir.Model(
            graph, ir_version=10, producer_name=producer, producer_version=__version__
        )


def _as_dtype(dtype: ir.DataType | np.dtype | type) -> ir.DataType:
    if isinstance(dtype, ir.DataType):
        return dtype
    return ir.DataType.from_numpy(np.dtype(dtype))
