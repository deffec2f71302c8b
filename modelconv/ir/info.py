"""Describing a graph's signature: TensorSpec and helpers (framework-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape of a model input/output. Dims may be str or None."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return all(isinstance(d, int) for d in self.shape)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class ModelInfo:
    """What :func:`inspect` tells about a model file."""

    path: str
    format: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    op_counts: dict[str, int]
    num_parameters: int
    parameter_bytes: int
    opset: int | None = None  # ONNX files only: the default-domain opset
    producer: str | None = None  # as the file names it (ONNX producer, Keras version...)
    #: every stored tensor, for weights files and TFLite: name, dtype, shape, bytes (TFLite
    #: also ``quantization``: scale/zero-point counts, first values, quantized dimension)
    tensors: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        def sig(specs: list[TensorSpec]) -> str:
            return ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in specs)

        head = self.format + (f", opset {self.opset}" if self.opset else "")
        return (f"<ModelInfo {self.path} ({head}): inputs [{sig(self.inputs)}] -> outputs "
                f"[{sig(self.outputs)}]; {self.num_parameters:,} parameters "
                f"({self.parameter_bytes / 1e6:.2f} MB), {sum(self.op_counts.values())} ops"
                + (f", {len(self.tensors)} tensors" if self.tensors else "") + ">")

    def _repr_html_(self) -> str:
        import html

        def rows(title: str, specs: list[TensorSpec]) -> str:
            return "".join(f"<tr><td>{title}</td><td>{html.escape(s.name)}</td>"
                           f"<td>{html.escape(s.dtype)}</td>"
                           f"<td>{html.escape(str(list(s.shape)))}</td></tr>" for s in specs)

        head = html.escape(self.format) + (f", opset {self.opset}" if self.opset else "")
        if self.producer:
            head += f", producer {html.escape(self.producer)}"
        ops = ", ".join(f"{html.escape(k)} &times;{v}" for k, v in self.op_counts.items())
        return (f"<div><p><b>{html.escape(self.path)}</b>: {head}</p>"
                "<table><tr><th></th><th>name</th><th>dtype</th><th>shape</th></tr>"
                f"{rows('input', self.inputs)}{rows('output', self.outputs)}</table>"
                f"<p>{self.num_parameters:,} parameters "
                f"({self.parameter_bytes / 1e6:.2f} MB)</p><p>ops: {ops}</p></div>")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path, "format": self.format, "opset": self.opset,
            "producer": self.producer,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "op_counts": self.op_counts, "num_parameters": self.num_parameters,
            "parameter_bytes": self.parameter_bytes, "tensors": self.tensors,
        }


def _spec(value: ir.Value) -> TensorSpec:
    dtype = "unknown"
    if value.dtype is not None:
        try:
            dtype = np.dtype(value.dtype.numpy()).name
        except (TypeError, ValueError, NotImplementedError):
            dtype = value.dtype.name.lower()
    dims: tuple[int | str | None, ...] = ()
    if value.shape is not None:
        dims = tuple(
            d if isinstance(d, int) else (d.value if isinstance(d, ir.SymbolicDim) else None)
            for d in value.shape
        )
    return TensorSpec(value.name or "", dtype, dims)


def graph_input_specs(graph: ir.Graph) -> list[TensorSpec]:
    """Specs of the graph's real inputs (initializers listed as inputs are skipped)."""
    inits = set(graph.initializers)
    return [_spec(v) for v in graph.inputs if v.name not in inits]


def graph_output_specs(graph: ir.Graph) -> list[TensorSpec]:
    """Specs of the graph outputs."""
    return [_spec(v) for v in graph.outputs]


#: ops that pass an index tensor's values through unchanged (reshaped or recast)
_VALUE_PRESERVING = {"Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity",
                     "Expand"}


def _index_uses(value: ir.Value, depth: int = 0) -> list[tuple[ir.Node, int]]:
    """Uses of ``value``, looking through ops that only reshape or recast it."""
    uses: list[tuple[ir.Node, int]] = []
    for user, index in value.uses():
        if user.op_type in _VALUE_PRESERVING and index == 0 and depth < 4 and user.outputs:
            uses.extend(_index_uses(user.outputs[0], depth + 1))
        else:
            uses.append((user, index))
    return uses


def infer_int_ranges(graph: ir.Graph) -> dict[str, tuple[int, int]]:
    """For inputs used as Gather indices into a constant table, the valid [lo, hi).

    Lets the verifier generate token ids inside an embedding's vocabulary. The index may
    reach the Gather through a Cast (a float Keras input) or a Reshape/Squeeze/Unsqueeze.
    """
    ranges: dict[str, tuple[int, int]] = {}
    for value in graph.inputs:
        if value.dtype not in (ir.DataType.INT64, ir.DataType.INT32, ir.DataType.FLOAT):
            continue
        for user, index in _index_uses(value):
            if user.op_type != "Gather" or index != 1:
                continue
            data = user.inputs[0]
            if data is None or data.shape is None or len(data.shape) == 0:
                continue
            axis = user.attributes.get_int("axis", 0)
            dim = data.shape[axis]
            if isinstance(dim, int) and value.name:
                lo, hi = ranges.get(value.name, (0, dim))
                ranges[value.name] = (lo, min(hi, dim))
        pad = _padding_value(value)
        if pad is not None and value.name:
            ranges[value.name + PADDED] = (pad, pad)
    return ranges


#: key suffix in :func:`infer_int_ranges`' result: ``name + PADDED`` -> ``(v, v)`` says the
#: model masks the time steps of input ``name`` equal to ``v`` (``Embedding(mask_zero=True)``
#: compares token ids with 0, ``Masking`` features with its ``mask_value``)
PADDED = ":padded"


def _padding_value(value: ir.Value) -> int | None:
    """The integral constant an input is compared with by ``Equal`` (a padding value)."""
    for user, index in _index_uses(value):
        if user.op_type != "Equal" or len(user.inputs) != 2:
            continue
        other = user.inputs[1 - index]
        const = other.const_value if other is not None else None
        if const is None:
            continue
        arr = const.numpy()
        if arr.size == 1 and float(arr.reshape(-1)[0]).is_integer():
            return int(arr.reshape(-1)[0])
    return None


def initializer_bytes(model: ir.Model) -> int:
    """Total size of the main graph's initializers in bytes.

    Args:
        model: the model.

    Returns:
        The summed ``nbytes`` of every initializer with a value.
    """
    total = 0
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            total += value.const_value.nbytes
    return total
