"""Initializers with the same dtype, shape and content become one.

    W_a = [1, 2, 3] ─► Add          W_a = [1, 2, 3] ─► Add
    W_b = [1, 2, 3] ─► Mul    ──►                  └─► Mul

Each candidate is hashed (SHA-256 of its C-ordered bytes) one at a time, so memory holds
one tensor's bytes, not every tensor's (onnx_ir's ``DeduplicateInitializersPass`` keys a
dict by the bytes themselves); a hash match is confirmed by comparing the two tensors.
Lazy tensors and views (strided, e.g. a lazily folded transpose) hash like any other.
Graph inputs/outputs and tensors above ``size_limit`` elements are left alone.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import InPlacePass, PassResult


def _bytes(tensor: ir.TensorProtocol) -> bytes:
    if tensor.dtype.is_string():
        return np.array(tensor.string_data()).tobytes()  # type: ignore[attr-defined]
    return tensor.tobytes()


class DedupeInitializersPass(InPlacePass):
    """Replace duplicate initializers of the main graph by the first of each kind."""

    def __init__(self, size_limit: int = 1 << 20):
        super().__init__()
        self.size_limit = size_limit

    def call(self, model: ir.Model) -> PassResult:
        """Deduplicate ``model.graph``'s initializers."""
        graph = model.graph
        seen: dict[tuple[ir.DataType, tuple[int, ...], bytes], ir.Value] = {}
        modified = False
        for value in tuple(graph.initializers.values()):
            tensor = value.const_value
            if tensor is None or tensor.size > self.size_limit or value.is_graph_input() \
                    or value.is_graph_output():
                continue
            data = _bytes(tensor)
            key = (tensor.dtype, tuple(tensor.shape.numpy()), hashlib.sha256(data).digest())
            first = seen.get(key)
            if first is None:
                seen[key] = value
                continue
            assert first.const_value is not None
            if _bytes(first.const_value) != data:
                continue
            value.replace_all_uses_with(first)
            graph.initializers.pop(value.name or "")
            modified = True
        return PassResult(model, modified)
