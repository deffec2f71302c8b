"""Describing a graph's signature: TensorSpec and helpers (framework-free)."""

from __future__ import annotations

from dataclasses import dataclass
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
    opset: int | None = None
    producer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "path": self.path, "format": self.format, "opset": self.opset,
            "producer": self.producer,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "op_counts": self.op_counts, "num_parameters": self.num_parameters,
            "parameter_bytes": self.parameter_bytes,
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


def infer_int_ranges(graph: ir.Graph) -> dict[str, tuple[int, int]]:
    """For integer inputs used as Gather indices into a constant table, the valid [lo, hi).

    Lets the verifier generate token ids inside an embedding's vocabulary.
    """
    ranges: dict[str, tuple[int, int]] = {}
    for value in graph.inputs:
        if value.dtype not in (ir.DataType.INT64, ir.DataType.INT32):
            continue
        for user, index in value.uses():
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
    return ranges
