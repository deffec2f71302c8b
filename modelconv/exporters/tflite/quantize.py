"""Post-training quantization of a lowered :class:`TflGraph`.

- ``fp16``: float constants stored as float16, each followed by one DEQUANTIZE op; float I/O.
- ``quantize="dynamic"``: CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights become int8,
  symmetric per output channel, so LiteRT picks its hybrid kernels (float activations);
  other large float constants are stored int8 + DEQUANTIZE.
- ``quantize="int8"``: full integer. Weights int8 per channel, biases int32
  (scale = input scale x weight scale), activations int8 with ranges calibrated on the
  float model (see :mod:`.calibration`). Ops without an int8 kernel here run in float
  between DEQUANTIZE/QUANTIZE. The model keeps float I/O (QUANTIZE / DEQUANTIZE at the
  boundary) unless ``int8_io``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelconv.exporters.tflite.graph import Op, QuantParams, Tensor, TflGraph
from modelconv.options import ConvertOptions

_MIN_WEIGHT = 1024  # smaller constants stay float (as the TFLite converter does)
_HYBRID = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
# UNIDIRECTIONAL_SEQUENCE_LSTM weight slots (input/recurrent, peephole, projection): the
# hybrid kernel takes them all int8 with one scale per tensor.
_LSTM_WEIGHTS = (*range(1, 12), 16)
_WEIGHTED = {"CONV_2D": (0, 1, 2, 0), "DEPTHWISE_CONV_2D": (0, 1, 2, 3),
             "FULLY_CONNECTED": (0, 1, 2, 0), "TRANSPOSE_CONV": (2, 1, 3, 0)}
_FIXED = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0), "SOFTMAX": (1 / 256, -128),
          "LOG_SOFTMAX": (16 / 256, 127)}
_SAME_AS_INPUT = {
    "RESHAPE": 0, "SQUEEZE": 0, "TRANSPOSE": 0, "MAX_POOL_2D": 0, "AVERAGE_POOL_2D": 0,
    "STRIDED_SLICE": 0, "GATHER": 0, "SPLIT": 1, "SPLIT_V": 0, "PAD": 0, "PADV2": 0,
    "RESIZE_NEAREST_NEIGHBOR": 0, "RESIZE_BILINEAR": 0, "DEPTH_TO_SPACE": 0,
    "SPACE_TO_DEPTH": 0, "UNPACK": 0, "BROADCAST_TO": 0, "TILE": 0, "REDUCE_MAX": 0,
    "REDUCE_MIN": 0,
}
_UNIFORM = {"CONCATENATION", "PACK", "MAXIMUM", "MINIMUM", "SELECT_V2"}
_INT8 = {
    *_WEIGHTED, *_FIXED, *_SAME_AS_INPUT, *_UNIFORM, "ADD", "SUB", "MUL", "MEAN", "SUM",
    "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU",
}


def quantize_graph(graph: TflGraph, options: ConvertOptions,
                   source_shapes: dict[str, list[int]]) -> TflGraph:
    """Apply the quantization ``options`` ask for (int8 > dynamic > fp16)."""
    if options.quantize == "int8":
        return full_int8(graph, options, source_shapes)
    if options.quantize == "dynamic":
        return dynamic_range(graph)
    if options.fp16:
        return float16(graph)
    return graph


def _float_consts(graph: TflGraph, min_size: int) -> list[int]:
    used = graph.consumers()
    return [i for i, t in enumerate(graph.tensors)
            if t.data is not None and t.dtype == np.float32 and t.data.size >= min_size
            and i in used]


def _stored_as(graph: TflGraph, idx: int, data: Any, quant: QuantParams | None,
               prefix: list[Op], suffix: str) -> None:
    """Replace constant ``idx`` by DEQUANTIZE(stored ``data``) so readers still see float."""
    t = graph.tensors[idx]
    stored = graph.add_tensor(f"{t.name}/{suffix}", data.dtype, list(data.shape), data)
    graph.tensors[stored].quant = quant
    t.data = None
    prefix.append(Op("DEQUANTIZE", [stored], [idx]))


class LazyCast:
    """``source.astype(dtype)``, computed each time it is read (by the writer, once).

    Stands in for the converted array of a large constant so a model's float16 copy is
    never in memory as a whole: the writer converts and writes one tensor at a time, and
    ``source`` may be a view of the source file's pages.
    """

    def __init__(self, source: np.ndarray, dtype: np.dtype) -> None:
        self.source = source
        self.dtype = np.dtype(dtype)
        self.shape = tuple(source.shape)
        self.size = int(source.size)
        self.ndim = source.ndim
        self.nbytes = self.size * self.dtype.itemsize

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The converted array."""
        out = np.asarray(self.source).astype(self.dtype)
        return out if dtype is None else out.astype(dtype)


#: constants above this many elements are converted to float16 / int8 while being written
LAZY_CAST_FROM = 1 << 16
#: elements of a weight read at a time while its peaks are measured
_PEAK_BLOCK = 1 << 22


class LazyInt8(LazyCast):
    """Symmetric int8 values of ``source`` for ``scale`` (per channel along ``axis``, or
    per tensor when ``axis`` is None), computed each time they are read (by the writer,
    once): a large weight's int8 copy is never held while the rest of the model is built.
    """

    def __init__(self, source: np.ndarray, scale: np.ndarray, axis: int | None) -> None:
        super().__init__(source, np.dtype(np.int8))
        self.scale, self.axis = scale, axis

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The int8 array."""
        out = _to_int8(np.asarray(self.source), self.scale, self.axis)
        return out if dtype is None else out.astype(dtype)


def _to_int8(w: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    return np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)


def _peaks(w: np.ndarray, axis: int) -> np.ndarray:
    """max |w| per index of ``axis``, a few channels at a time (no full-size temporary)."""
    moved = np.moveaxis(w, axis, 0)
    per = max(int(np.prod(moved.shape[1:], dtype=np.int64)), 1)
    step = max(1, _PEAK_BLOCK // per)
    out = np.empty(moved.shape[0], np.float64)
    for start in range(0, moved.shape[0], step):
        block = np.abs(moved[start:start + step]).reshape(-1, per)
        out[start:start + step] = block.max(axis=1) if block.size else 0.0
    return out


def _int8(w: np.ndarray, scale: np.ndarray, axis: int | None) -> Any:
    return LazyInt8(w, scale, axis) if w.size > LAZY_CAST_FROM else _to_int8(w, scale, axis)


def symmetric_per_tensor(w: np.ndarray) -> tuple[Any, float]:
    """int8 values (computed when written for a large weight) and the one scale
    (symmetric, range [-127, 127])."""
    flat = w.reshape(1, *w.shape) if w.ndim else w.reshape(1)
    scale = float(_peaks(flat, 0)[0]) / 127.0 or 1.0
    return _int8(w, np.asarray([scale], np.float32), None), scale


def float16(graph: TflGraph) -> TflGraph:
    """float32 constants -> float16 + DEQUANTIZE (large ones converted as written)."""
    prefix: list[Op] = []
    for idx in _float_consts(graph, 16):
        data = graph.tensors[idx].data
        assert data is not None
        half: Any = (LazyCast(data, np.dtype(np.float16)) if data.size > LAZY_CAST_FROM
                     else data.astype(np.float16))
        _stored_as(graph, idx, half, None, prefix, "fp16")
    graph.ops = prefix + graph.ops
    return graph


def symmetric_per_channel(w: np.ndarray, axis: int) -> tuple[Any, np.ndarray]:
    """int8 values (computed when written for a large weight) and per-channel scales
    (symmetric, range [-127, 127])."""
    scale = _peaks(w, axis) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return _int8(w, scale, axis), scale


def dynamic_range(graph: TflGraph) -> TflGraph:
    """int8 weights for hybrid conv/FC kernels; other big constants int8 + DEQUANTIZE."""
    consumers = graph.consumers()
    _hybrid_lstm(graph, consumers)
    hybrid: dict[int, int] = {}
    for op in graph.ops:
        if op.code in _HYBRID and len(op.inputs) > 1:
            hybrid.setdefault(op.inputs[1], _HYBRID[op.code])
    prefix: list[Op] = []
    for idx in _float_consts(graph, 1):
        if idx not in hybrid and graph.tensors[idx].data.size < _MIN_WEIGHT:  # type: ignore[union-attr]
            continue
        t = graph.tensors[idx]
        assert t.data is not None
        readers = [graph.ops[k] for k in consumers.get(idx, [])]
        if idx in hybrid and all(
            r.code in _HYBRID and r.inputs[1] == idx and idx not in (r.inputs[0], *r.inputs[2:])
            for r in readers
        ):
            q, scale = symmetric_per_channel(t.data, hybrid[idx])
            t.data, t.dtype = q, np.dtype(np.int8)
            t.quant = QuantParams(scale.tolist(), [0] * len(scale), hybrid[idx])
            continue
        q_t, peak = symmetric_per_tensor(t.data)
        _stored_as(graph, idx, q_t, QuantParams([peak], [0]), prefix, "int8")
    graph.ops = prefix + graph.ops
    return graph


def _hybrid_lstm(graph: TflGraph, consumers: dict[int, list[int]]) -> None:
    """int8 weights (symmetric, per tensor) for fused LSTMs, in place, so LiteRT runs its
    hybrid kernel. All weights of one op change together (the kernel wants one type);
    an op whose weights are shared with other readers stays float."""
    for op in graph.ops:
        if op.code != "UNIDIRECTIONAL_SEQUENCE_LSTM":
            continue
        slots = [op.inputs[k] for k in _LSTM_WEIGHTS if op.inputs[k] >= 0]
        if any(graph.tensors[i].data is None or graph.tensors[i].dtype != np.float32
               or len(consumers.get(i, [])) != 1 for i in slots):
            continue
        for i in slots:
            t = graph.tensors[i]
            assert t.data is not None
            t.data, scale = symmetric_per_tensor(t.data)
            t.dtype, t.quant = np.dtype(np.int8), QuantParams([scale], [0])


def affine_params(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 parameters covering [lo, hi] (and 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1e-8
    zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QuantParams([float(scale)], [zero])


def quantize_array(x: np.ndarray, q: QuantParams) -> np.ndarray:
    """Per-tensor affine int8 quantization of ``x`` with ``q``."""
    scaled = np.clip(x.astype(np.float64) / q.scale[0], -1e6, 1e6)
    return np.clip(np.round(scaled) + q.zero_point[0], -128, 127).astype(np.int8)


def full_int8(graph: TflGraph, options: ConvertOptions,
              source_shapes: dict[str, list[int]]) -> TflGraph:
    """Full-integer quantization calibrated on the float model."""
    from modelconv.exporters.tflite.calibration import collect_ranges, load_samples
    from modelconv.exporters.tflite.writer import serialize

    samples = load_samples(graph, options.calibration, source_shapes, options.seed)
    ranges = collect_ranges(serialize(graph), graph, samples)
    _Int8Rewriter(graph, ranges, options.int8_io).run()
    return graph


class _Int8Rewriter:
    def __init__(self, graph: TflGraph, ranges: dict[int, tuple[float, float]], int8_io: bool):
        self.g = graph
        self.ranges = ranges
        self.int8_io = int8_io
        self.ops: list[Op] = []
        self.qver: dict[tuple[int, tuple[float, int] | None], int] = {}
        self.fver: dict[int, int] = {}
        self.weights: dict[tuple[int, int], tuple[int, np.ndarray]] = {}
        self.biases: dict[tuple[int, bytes], int] = {}

    def t(self, i: int) -> Tensor:
        """The tensor record ``i``."""
        return self.g.tensors[i]

    def params(self, i: int) -> QuantParams:
        """Calibrated int8 parameters of activation ``i``."""
        lo, hi = self.ranges.get(i, (-1.0, 1.0))
        return affine_params(lo, hi)

    def is_q(self, i: int) -> bool:
        """True for a run-time *quantized* int8 tensor (one this rewriter gave parameters).

        A model's own int8 data (no parameters) is plain integers: ops on it are left as
        lowered, never requantized."""
        t = self.t(i)
        return t.dtype == np.int8 and t.data is None and t.quant is not None

    def to_int8(self, i: int, q: QuantParams | None = None) -> int:
        """int8 view of float/int8 tensor ``i`` (with params ``q`` if given)."""
        t = self.t(i)
        key = (i, None if q is None else (q.scale[0], q.zero_point[0]))
        if key in self.qver:
            return self.qver[key]
        if t.data is not None:
            qp = q or affine_params(float(t.data.min()), float(t.data.max()))
            out = self.g.add_tensor(f"{t.name}/int8", np.int8, t.shape,
                                    quantize_array(t.data, qp))
            self.t(out).quant = qp
        elif self.is_q(i) and (q is None or self._same(t.quant, q)):
            return i
        else:
            qp = q or self.params(i)
            out = self.g.add_tensor(f"{t.name}/int8", np.int8, t.shape)
            self.t(out).quant = qp
            self.ops.append(Op("QUANTIZE", [i], [out]))
        self.qver[key] = out
        return out

    def to_float(self, i: int) -> int:
        """float view of ``i`` (DEQUANTIZE once if it is int8)."""
        if not self.is_q(i):
            return i
        if i not in self.fver:
            t = self.t(i)
            out = self.g.add_tensor(f"{t.name}/float", np.float32, t.shape)
            self.ops.append(Op("DEQUANTIZE", [i], [out]))
            self.fver[i] = out
        return self.fver[i]

    @staticmethod
    def _same(a: QuantParams | None, b: QuantParams) -> bool:
        return a is not None and a.scale == b.scale and a.zero_point == b.zero_point

    def run(self) -> None:
        """Rewrite every op, then fix the graph's I/O dtypes."""
        g = self.g
        if self.int8_io:
            for i in g.inputs:
                if self.t(i).dtype == np.float32:
                    self.t(i).quant, self.t(i).dtype = self.params(i), np.dtype(np.int8)
        for op in g.ops:
            if op.code in _INT8 and self._float_io(op):
                self.rewrite(op)
            else:
                op.inputs = [self.to_float(i) if i >= 0 else i for i in op.inputs]
            self.ops.append(op)
        for k, i in enumerate(g.outputs):
            want_q = self.int8_io and self.t(i).dtype in (np.float32, np.int8)
            if self.is_q(i) and not want_q:
                g.outputs[k] = self._rename_swap(i, self.to_float(i))
            elif want_q and not self.is_q(i):
                g.outputs[k] = self._rename_swap(i, self.to_int8(i))
        g.ops = self.ops

    def _rename_swap(self, old: int, new: int) -> int:
        """Give the boundary tensor ``new`` the signature name of ``old``."""
        a, b = self.t(old), self.t(new)
        a.name, b.name = b.name, a.name
        return new

    def _float_io(self, op: Op) -> bool:
        if any(self.t(i).variable for i in op.outputs):  # RNN state: stays float
            return False
        return all(self.t(i).dtype in (np.float32, np.int8) for i in op.outputs) and any(
            i >= 0 and (self.t(i).dtype == np.float32 or self.is_q(i)) for i in op.inputs)

    def rewrite(self, op: Op) -> None:
        """Move one int8-capable op to int8 inputs/outputs."""
        if op.code in _WEIGHTED:
            self._weighted(op)
            return
        same = _SAME_AS_INPUT.get(op.code)
        if same is not None:
            op.inputs[same] = self.to_int8(op.inputs[same])
            out_q = self.t(op.inputs[same]).quant
        else:
            out_q = self._output_params(op)
        uniform = op.code in _UNIFORM or same is not None
        for slot, i in enumerate(op.inputs):
            if slot == same or i < 0 or not (self.t(i).dtype == np.float32 or self.is_q(i)):
                continue
            op.inputs[slot] = self.to_int8(i, out_q if uniform else None)
        for o in op.outputs:
            if self.t(o).dtype == np.float32:
                self.t(o).dtype, self.t(o).quant = np.dtype(np.int8), out_q

    def _bias(self, idx: int, scale: np.ndarray) -> int:
        """int32 bias with scale = input scale x weight scale (per channel)."""
        key = (idx, scale.astype(np.float64).tobytes())
        if key not in self.biases:
            b = self.t(idx)
            assert b.data is not None
            b_scale = scale.astype(np.float64)
            bq = np.clip(np.round(b.data / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
            bi = self.g.add_tensor(f"{b.name}/int32", np.int32, b.shape, bq)
            self.t(bi).quant = QuantParams(b_scale.tolist(), [0] * len(b_scale), 0)
            self.biases[key] = bi
        return self.biases[key]

    def _output_params(self, op: Op) -> QuantParams:
        if op.code in _FIXED:
            scale, zero = _FIXED[op.code]
            return QuantParams([scale], [zero])
        return self.params(op.outputs[0])

    def _weighted(self, op: Op) -> None:
        data, w_slot, b_slot, axis = _WEIGHTED[op.code]
        x = self.to_int8(op.inputs[data])
        w = self.t(op.inputs[w_slot])
        if w.data is None or w.dtype != np.float32:
            op.inputs = [self.to_float(i) if i >= 0 else i for i in op.inputs]
            return
        key = (op.inputs[w_slot], axis)
        if key not in self.weights:  # shared weights (unrolled RNN steps) are stored once
            q, scale = symmetric_per_channel(w.data, axis)
            wq = self.g.add_tensor(f"{w.name}/int8", np.int8, w.shape, q)
            self.t(wq).quant = QuantParams(scale.tolist(), [0] * len(scale), axis)
            self.weights[key] = (wq, scale)
        wq, w_scale = self.weights[key]
        op.inputs[data], op.inputs[w_slot] = x, wq
        x_q = self.t(x).quant
        assert x_q is not None
        if b_slot < len(op.inputs) and op.inputs[b_slot] >= 0:
            op.inputs[b_slot] = self._bias(op.inputs[b_slot], x_q.scale[0] * w_scale)
        out = op.outputs[0]
        self.t(out).dtype, self.t(out).quant = np.dtype(np.int8), self.params(out)


