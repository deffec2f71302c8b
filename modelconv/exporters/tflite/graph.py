"""A small in-memory TFLite graph (tensors + operators) that lowerings append to.

Lowerings never touch flatbuffers: they call :class:`LoweringContext` helpers, the
quantizer rewrites the :class:`TflGraph`, and :mod:`.writer` serialises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.ir.arrays import digest, view_key

FUSED_ATTR = "fused_activation"

# Builtins whose LiteRT kernels apply ``fused_activation_function`` (tflite/kernels add.cc,
# sub.cc, mul.cc, div.cc, conv.cc, depthwise_conv.cc, fully_connected.cc, transpose_conv.cc,
# pooling.cc, l2norm.cc read ``params->activation`` through CalculateActivationRange[Quantized]).
# Those helpers clamp for RELU, RELU6 and RELU_N1_TO_1 only and treat every other value (TANH,
# SIGN_BIT) as NONE; CONCATENATION's Prepare requires NONE. Any other (op, activation) pair is
# written as the op followed by a separate activation op (see LoweringContext.emit).
FUSED_ACTIVATION_OPS = frozenset({
    "ADD", "SUB", "MUL", "DIV", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
    "TRANSPOSE_CONV", "AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "L2_NORMALIZATION",
})
KERNEL_ACTIVATIONS = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}  # ActivationFunctionType codes
# Recurrent kernels read the same field as their cell / hidden activation (lstm_eval.cc,
# basic_rnn.cc, svdf.cc apply TANH, RELU, SIGMOID... inside the recurrence): not an output
# clamp, so emit() leaves it alone.
RECURRENT_ACTIVATION_OPS = frozenset({
    "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF",
})
_STANDALONE_ACTIVATIONS = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}


@dataclass
class QuantParams:
    """Affine quantization of one tensor (per-tensor or per-axis)."""

    scale: list[float]
    zero_point: list[int]
    axis: int = 0


@dataclass
class Tensor:
    """One TFLite tensor; ``data`` is set for constants, ``variable`` for RNN state tensors
    that a kernel updates in place."""

    name: str
    dtype: np.dtype
    shape: list[int]
    data: np.ndarray | None = None
    quant: QuantParams | None = None
    shape_signature: list[int] | None = None
    variable: bool = False


@dataclass
class Op:
    """One TFLite operator: builtin name, tensor indices (-1 = omitted) and options object."""

    code: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class TflGraph:
    """Tensors, ops and the signature of a single-subgraph TFLite model."""

    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)
    _next: dict[str, int] = field(default_factory=dict)
    _consts: dict[tuple[str, tuple[int, ...], bytes], int] = field(default_factory=dict)

    def add_tensor(self, name: str, dtype: Any, shape: list[int],
                   data: np.ndarray | None = None) -> int:
        """Append a tensor with a unique name; returns its index."""
        name = self._unique(name or "t")
        self.tensors.append(Tensor(name, np.dtype(dtype), [int(d) for d in shape], data))
        return len(self.tensors) - 1

    def rename(self, idx: int, name: str) -> None:
        """Give tensor ``idx`` a new (unique) name, freeing its old one."""
        self._names.discard(self.tensors[idx].name)
        self.tensors[idx].name = self._unique(name)

    def _unique(self, base: str) -> str:
        """``base``, else ``base_<i>`` with the next free i (per base: O(1) amortised)."""
        name, i = base, self._next.get(base, 1)
        if name in self._names:
            name = f"{base}_{i}"
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._next[base] = i
        self._names.add(name)
        return name

    def add_const(self, array: np.ndarray, name: str) -> int:
        """A constant tensor; identical small constants share one tensor."""
        # a strided view (a transposed weight of a mapped source) stays a view: the writer
        # copies it in blocks; a C-ordered array is written without any copy
        arr = np.asarray(array)
        raw = arr.tobytes() if arr.nbytes <= 1024 else view_key(arr) or digest(arr)
        key = (arr.dtype.str, arr.shape, raw)
        if key in self._consts:
            return self._consts[key]
        idx = self.add_tensor(name, arr.dtype, list(arr.shape), arr)
        self._consts[key] = idx
        return idx

    def prune(self) -> None:
        """Drop tensors no operator or signature refers to (renumbering the rest)."""
        used = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            used.update(t for t in (*op.inputs, *op.outputs) if t >= 0)
        keep = [i for i in range(len(self.tensors)) if i in used]
        remap = {old: new for new, old in enumerate(keep)}
        self.tensors = [self.tensors[i] for i in keep]
        for op in self.ops:
            op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
            op.outputs = [remap[t] for t in op.outputs]
        self.inputs = [remap[t] for t in self.inputs]
        self.outputs = [remap[t] for t in self.outputs]
        self._consts.clear()

    def consumers(self) -> dict[int, list[int]]:
        """tensor index -> indices of ops reading it."""
        table: dict[int, list[int]] = {}
        for k, op in enumerate(self.ops):
            for t in op.inputs:
                if t >= 0:
                    table.setdefault(t, []).append(k)
        return table


_NP_OF_IR = {
    ir.DataType.FLOAT: np.float32, ir.DataType.FLOAT16: np.float16,
    ir.DataType.DOUBLE: np.float32, ir.DataType.INT64: np.int64, ir.DataType.INT32: np.int32,
    ir.DataType.INT16: np.int16, ir.DataType.INT8: np.int8, ir.DataType.UINT8: np.uint8,
    ir.DataType.BOOL: np.bool_, ir.DataType.UINT16: np.uint16, ir.DataType.UINT32: np.uint32,
}


def np_dtype(dtype: ir.DataType | None) -> np.dtype:
    """numpy dtype TFLite uses for an IR dtype (float64 is narrowed to float32)."""
    if dtype is None or dtype not in _NP_OF_IR:
        raise ExportError(f"TFLite has no tensor type for {dtype}")
    return np.dtype(_NP_OF_IR[dtype])


class LoweringContext:
    """What a lowering function sees: IR values -> TFLite tensors, and op emission."""

    def __init__(self, graph: TflGraph):
        self.g = graph
        self.tensor_of: dict[ir.Value, int] = {}
        self.node: ir.Node | None = None

    # -- reading the IR ------------------------------------------------------------
    @staticmethod
    def array(value: ir.Value | None) -> np.ndarray | None:
        """The constant content of ``value`` (None for run-time values)."""
        if value is None or value.const_value is None:
            return None
        arr = np.asarray(value.const_value.numpy())
        return arr.astype(np.float32) if arr.dtype == np.float64 else arr

    def need_array(self, value: ir.Value | None, what: str) -> np.ndarray:
        """Like :meth:`array` but raises ExportError for run-time values."""
        arr = self.array(value)
        if arr is None:
            where = self.node.name if self.node is not None else "?"
            raise ExportError(f"TFLite export needs a constant {what} (node {where})")
        return arr

    @staticmethod
    def shape(value: ir.Value) -> list[int]:
        """Static shape of ``value`` (symbolic dims are an ExportError)."""
        if value.shape is None:
            raise ExportError(f"shape of '{value.name}' is unknown after shape inference")
        dims: list[int] = []
        for d in value.shape:
            if not isinstance(d, int):
                raise ExportError(f"shape of '{value.name}' is not static: {value.shape}")
            dims.append(int(d))
        return dims

    # -- tensors ---------------------------------------------------------------------
    def get(self, value: ir.Value) -> int:
        """Tensor index for an input value (constants become constant tensors)."""
        if value in self.tensor_of:
            return self.tensor_of[value]
        arr = self.array(value)
        if arr is None:
            raise ExportError(f"value '{value.name}' is used before it is produced")
        idx = self.g.add_const(arr, value.name or "const")
        self.tensor_of[value] = idx
        return idx

    def inp(self, node: ir.Node, i: int) -> int:
        """Tensor index of ``node.inputs[i]`` (-1 when omitted)."""
        if i >= len(node.inputs) or node.inputs[i] is None:
            return -1
        value = node.inputs[i]
        assert value is not None
        return self.get(value)

    def out(self, node: ir.Node, i: int = 0) -> int:
        """The tensor for ``node.outputs[i]`` (created on first use)."""
        value = node.outputs[i]
        if value in self.tensor_of:
            return self.tensor_of[value]
        idx = self.g.add_tensor(value.name or "out", np_dtype(value.dtype), self.shape(value))
        self.tensor_of[value] = idx
        return idx

    def alias(self, value: ir.Value, tensor: int) -> None:
        """Make ``value`` refer to an existing tensor (no op emitted)."""
        self.tensor_of[value] = tensor

    def const(self, array: Any, name: str = "const", dtype: Any = None) -> int:
        """A new constant tensor."""
        arr = np.asarray(array, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return self.g.add_const(arr, f"{self._prefix()}{name}")

    def i32(self, values: Any, name: str = "shape") -> int:
        """An int32 constant (shapes, axes, perms)."""
        return self.const(np.asarray(values, np.int64).astype(np.int32), name)

    def tmp(self, name: str, dtype: Any, shape: list[int]) -> int:
        """A new intermediate tensor named after the current node."""
        return self.g.add_tensor(f"{self._prefix()}{name}", dtype, shape)

    def like(self, tensor: int, name: str, shape: list[int] | None = None) -> int:
        """A new intermediate with ``tensor``'s dtype (and shape unless given)."""
        t = self.g.tensors[tensor]
        return self.tmp(name, t.dtype, list(t.shape) if shape is None else shape)

    def t(self, tensor: int) -> Tensor:
        """The Tensor record at ``tensor``."""
        return self.g.tensors[tensor]

    def _prefix(self) -> str:
        if self.node is None:
            return ""
        out = self.node.outputs[0].name if self.node.outputs else self.node.name
        return f"{out}/"

    # -- ops ---------------------------------------------------------------------------
    def emit(self, code: str, inputs: list[int], outputs: list[int], options: Any = None) -> Op:
        """Append one builtin operator.

        A fused activation is kept only where the op's LiteRT kernel applies it
        (:data:`FUSED_ACTIVATION_OPS`, float outputs, :data:`KERNEL_ACTIVATIONS`); otherwise
        the op writes a temporary and the activation follows as its own op."""
        act = int(getattr(options, "fusedActivationFunction", 0) or 0)
        applied = code in FUSED_ACTIVATION_OPS and act in KERNEL_ACTIVATIONS and len(
            outputs) == 1 and self.t(outputs[0]).dtype == np.float32
        if act and code not in RECURRENT_ACTIVATION_OPS and not applied:
            if act not in _STANDALONE_ACTIVATIONS or len(outputs) != 1:
                raise ExportError(f"internal error: {code} cannot carry activation {act}")
            options.fusedActivationFunction = 0
            raw = self.like(outputs[0], f"{code.lower()}_raw")
            op = self.emit(code, inputs, [raw], options)
            self.emit(_STANDALONE_ACTIVATIONS[act], [raw], list(outputs))
            return op
        op = Op(code, list(inputs), list(outputs), options)
        self.g.ops.append(op)
        return op

    def activation(self, node: ir.Node) -> int:
        """The ActivationFunctionType code fused into ``node`` (0 = NONE)."""
        from ai_edge_litert import schema_py_generated as s

        a = node.attributes.get(FUSED_ATTR)
        return 0 if a is None else int(getattr(s.ActivationFunctionType, a.value))

    def apply_activation(self, node: ir.Node, src: int, dst: int) -> None:
        """Emit the fused activation of ``node`` as its own op (for ops that cannot fuse)."""
        a = node.attributes.get(FUSED_ATTR)
        if a is None:
            self.emit("RESHAPE", [src, self.i32(self.t(dst).shape)], [dst])
            return
        code = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1",
                "TANH": "TANH"}[a.value]
        self.emit(code, [src], [dst])

    def reshape(self, src: int, shape: list[int], name: str = "reshaped",
                dst: int | None = None) -> int:
        """Emit RESHAPE of ``src`` to ``shape`` (into ``dst`` if given)."""
        if dst is None:
            dst = self.like(src, name, list(shape))
        self.emit("RESHAPE", [src, self.i32(list(shape))], [dst])
        return dst

    def transpose(self, src: int, perm: list[int], name: str = "transposed",
                  dst: int | None = None) -> int:
        """Emit TRANSPOSE of ``src`` by ``perm``."""
        shape = self.t(src).shape
        if dst is None:
            dst = self.like(src, name, [shape[p] for p in perm])
        self.emit("TRANSPOSE", [src, self.i32(list(perm), "perm")], [dst])
        return dst
