"""A QDQ model's quantization kept in TFLite: the ops between DEQUANTIZE and QUANTIZE run in int8.

A QDQ model (QuantizeLinear / DequantizeLinear pairs around Conv, MatMul, Add, ...) is
lowered as a float graph with explicit QUANTIZE / DEQUANTIZE ops (:mod:`.ops_quant`) and
float weights that were folded from constant DQs with their parameters remembered
(:mod:`modelconv.passes.tflite.fold_dequantize`). That graph computes what the ONNX model
defines. This rewrite then moves each op to LiteRT's int8 kernel where the model says
so, using the model's own scales and zero points::

    q_x ─► DEQUANTIZE ─► x ─► CONV_2D(W float) ─► y ─► QUANTIZE(s_y, z_y) ─► q_y
    becomes
    q_x ───────────────────► CONV_2D(W int8 per channel, bias int32) ─► q_y (s_y, z_y)

An op is moved when every run-time float input is a DEQUANTIZE'd int8 tensor, every float
output is read only by QUANTIZEs with one set of int8 parameters (or by an exact data move
that is), and LiteRT has an int8 kernel for that combination (:data:`COMPUTE`,
:data:`MOVES`, :data:`WEIGHTED`). Weights must lie exactly on their recorded grid with
zero point 0 (LiteRT's int8 filters are symmetric), biases become int32 with scale
``s_x * s_w``. Everything else stays float between the explicit DEQUANTIZE / QUANTIZE ops,
which is what the QDQ model computes there too; those ops are reported in a warning.
uint8 tensors (onnxruntime's former default) become int8 with the zero point shifted by
128 (the same real values). Weights read by float ops (weight-only QDQ, asymmetric uint8
weights) are stored as their int8 values (+ zero point) and a DEQUANTIZE, exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelconv.exporters.tflite.graph import Op, QuantParams, Tensor, TflGraph
from modelconv.passes.tflite.fold_dequantize import WeightQuant

#: data input, weight input, bias input, output-channel axis of the TFLite filter
WEIGHTED = {"CONV_2D": (0, 1, 2, 0), "DEPTHWISE_CONV_2D": (0, 1, 2, 3),
            "FULLY_CONNECTED": (0, 1, 2, 0), "TRANSPOSE_CONV": (2, 1, 3, 0)}
#: ops with a LiteRT hybrid kernel (float activations, int8 weights)
HYBRID = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
#: exact data moves (the int8 output takes the input's parameters): op -> data input
MOVES = {
    "RESHAPE": 0, "SQUEEZE": 0, "EXPAND_DIMS": 0, "TRANSPOSE": 0, "MAX_POOL_2D": 0,
    "STRIDED_SLICE": 0, "SLICE": 0, "GATHER": 0, "PAD": 0, "PADV2": 0, "SPLIT": 1, "SPLIT_V": 0,
    "RESIZE_NEAREST_NEIGHBOR": 0, "DEPTH_TO_SPACE": 0, "SPACE_TO_DEPTH": 0, "UNPACK": 0,
    "BROADCAST_TO": 0, "TILE": 0, "REDUCE_MAX": 0, "REDUCE_MIN": 0,
}
#: int8 kernels that take their own output parameters
COMPUTE = frozenset({"ADD", "SUB", "MUL", "MEAN", "RELU", "RELU6", "LEAKY_RELU", "BATCH_MATMUL",
                     "HARD_SWISH", "CONCATENATION", "AVERAGE_POOL_2D", "LOGISTIC", "TANH",
                     "SOFTMAX"})
#: kernels whose int8 output parameters are fixed (tflite/kernels activations.cc)
FIXED = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0), "SOFTMAX": (1 / 256, -128)}
#: kernels that need the output parameters equal to the input's (a requantize follows)
SAME_PARAMS = frozenset({"AVERAGE_POOL_2D"})
#: kernels whose int8 inputs must all carry the output's parameters (requantized first)
UNIFORM = frozenset({"CONCATENATION"})
_GRID_RTOL = 1e-5


def has_quantization(graph: TflGraph) -> bool:
    """True when the lowered graph has QUANTIZE / DEQUANTIZE ops (a QDQ source)."""
    return any(op.code in ("QUANTIZE", "DEQUANTIZE") for op in graph.ops)


def on_grid(w: np.ndarray, scale: np.ndarray, axis: int | None,
            zero: np.ndarray | None = None) -> np.ndarray | None:
    """``w / scale + zero`` as int8 when every value lies on that grid, else None.

    Args:
        w: float weights.
        scale: per-tensor (size 1) or per-channel scales along ``axis``.
        axis: the channel axis (ignored for one scale).
        zero: int8 zero points like ``scale`` (None: 0).

    Returns:
        The int8 values, or None when ``w`` is not exactly representable.
    """
    shape = [1] * w.ndim
    if scale.size > 1:
        if axis is None or w.shape[axis] != scale.size:
            return None
        shape[axis] = -1
    s = scale.astype(np.float64).reshape(shape if scale.size > 1 else [])
    z = np.zeros((), np.float64) if zero is None else \
        np.broadcast_to(zero.astype(np.float64).reshape(-1), (scale.size,)).reshape(s.shape)
    if np.any(s <= 0):
        return None
    q = np.round(w.astype(np.float64) / s) + z
    if np.any(q < -128) or np.any(q > 127):
        return None
    back = ((q - z) * s).astype(np.float32)
    if not np.allclose(back, w, rtol=_GRID_RTOL, atol=float(s.min()) * 1e-3):
        return None
    return q.astype(np.int8)


class QdqRewriter:
    """The rewrite described in the module docstring (one instance per graph)."""

    def __init__(self, graph: TflGraph, origins: Sequence[Any], hints: dict[str, WeightQuant]):
        self.g = graph
        self.origin = {id(op): origins[k] if k < len(origins) else None
                       for k, op in enumerate(graph.ops)}
        self.hints = hints
        self.consumers = graph.consumers()
        self.outputs = set(graph.outputs)
        self.qview: dict[int, int] = {}  # float tensor -> int8 tensor it equals DQ of
        self.alias: dict[int, int] = {}
        self.ops: list[Op] = []
        self.weights: dict[tuple[int, bytes], tuple[int, np.ndarray]] = {}
        self.float_ops: list[str] = []

    def t(self, i: int) -> Tensor:
        """The tensor record ``i``."""
        return self.g.tensors[i]

    def q8(self, i: int) -> bool:
        """A run-time int8 tensor with per-tensor parameters."""
        t = self.t(i)
        return i >= 0 and t.data is None and t.dtype == np.int8 and t.quant is not None \
            and len(t.quant.scale) == 1

    def run(self) -> list[str]:
        """Rewrite the graph in place; returns the quantized ops left in float."""
        self._uint8_to_int8()
        for op in list(self.g.ops):
            op.inputs = [self.alias.get(i, i) for i in op.inputs]
            if op.code == "DEQUANTIZE":
                if self.q8(op.inputs[0]):
                    self.qview[op.outputs[0]] = op.inputs[0]
                self.ops.append(op)
            elif op.code == "QUANTIZE":
                self._quantize(op)
            elif not self._rewrite(op):
                self._note_float(op)
                self.ops.append(op)
        self.g.ops = self.ops
        self._store_float_weights()
        _drop_dead(self.g)
        return self.float_ops

    # -- the pieces ------------------------------------------------------------------
    def _uint8_to_int8(self) -> None:
        """Inner uint8 tensors read / written only by (DE)QUANTIZE become int8, zp - 128."""
        producers = {o: op for op in self.g.ops for o in op.outputs}
        for i, t in enumerate(self.g.tensors):
            if t.dtype != np.uint8 or t.data is not None or t.quant is None \
                    or i in self.outputs or i in self.g.inputs:
                continue
            users = [self.g.ops[k].code for k in self.consumers.get(i, [])]
            prod = producers.get(i)
            if prod is None or prod.code != "QUANTIZE" or any(
                    u not in ("DEQUANTIZE", "QUANTIZE") for u in users):
                continue
            t.dtype = np.dtype(np.int8)
            t.quant = QuantParams(list(t.quant.scale), [z - 128 for z in t.quant.zero_point],
                                  t.quant.axis)

    def _quantize(self, op: Op) -> None:
        """QUANTIZE of a DEQUANTIZE'd int8 tensor: dropped when the parameters agree,
        else an int8 -> int8 requantize."""
        f, out = op.inputs[0], op.outputs[0]
        src = self.qview.get(f)
        if src is not None and self.t(out).data is None and self.t(out).quant is not None:
            if self.q8(out) and self.t(src).quant == self.t(out).quant and \
                    out not in self.outputs:
                self.alias[out] = src
                return
            op.inputs[0] = src
        self.ops.append(op)

    def _out_params(self, o: int, depth: int = 0) -> QuantParams | None:
        """The int8 parameters every reader of float tensor ``o`` quantizes it with."""
        if o in self.outputs or depth > 8:
            return None
        readers = [self.g.ops[k] for k in self.consumers.get(o, [])]
        if not readers:
            return None
        if all(r.code == "QUANTIZE" for r in readers):
            found = {(tuple(self.t(r.outputs[0]).quant.scale),  # type: ignore[union-attr]
                      tuple(self.t(r.outputs[0]).quant.zero_point))  # type: ignore[union-attr]
                     for r in readers if self.q8(r.outputs[0])}
            if len(found) != 1 or any(not self.q8(r.outputs[0]) for r in readers):
                return None
            return self.t(readers[0].outputs[0]).quant
        r = readers[0]
        if len(readers) == 1 and r.code in MOVES and r.code != "MAX_POOL_2D" and \
                r.inputs[MOVES[r.code]] == o and len(r.outputs) == 1:
            return self._out_params(r.outputs[0], depth + 1)
        return None

    def _new_int8(self, like: int, q: QuantParams, suffix: str = "int8") -> int:
        t = self.t(like)
        idx = self.g.add_tensor(f"{t.name}/{suffix}", np.int8, list(t.shape))
        self.t(idx).quant = q
        if t.shape_signature is not None:
            self.t(idx).shape_signature = list(t.shape_signature)
        return idx

    def _bind_outputs(self, op: Op, params: list[QuantParams]) -> list[Op]:
        """Point ``op``'s float outputs at new int8 tensors; DEQUANTIZEs keep the float ones."""
        after = []
        for j, (o, q) in enumerate(zip(op.outputs, params, strict=True)):
            new = self._new_int8(o, q)
            self._take_name(new, o)
            op.outputs[j] = new
            self.qview[o] = new
            after.append(Op("DEQUANTIZE", [new], [o]))
        return after

    def _take_name(self, new: int, o: int) -> None:
        """Give int8 tensor ``new`` (the rounded value of float ``o``) the name the source
        has for that rounded value: the output of the DequantizeLinear after the
        QuantizeLinear reading ``o`` if there is one, else ``o``'s (so localisation compares
        like with like)."""
        target = o
        for k in self.consumers.get(o, []):
            quantize = self.g.ops[k]
            if quantize.code != "QUANTIZE":
                continue
            deq = [self.g.ops[c] for c in self.consumers.get(quantize.outputs[0], [])
                   if self.g.ops[c].code == "DEQUANTIZE"]
            if deq and deq[0].outputs[0] not in self.outputs:
                target = deq[0].outputs[0]
                break
        name = self.t(target).name
        self.g.rename(target, f"{name}/dequantized")
        self.g.rename(new, name)

    def _runtime_float(self, op: Op, skip: Sequence[int] = ()) -> list[int]:
        return [s for s, i in enumerate(op.inputs) if s not in skip and i >= 0
                and self.t(i).data is None and self.t(i).dtype == np.float32]

    def _rewrite(self, op: Op) -> bool:
        """Move ``op`` to int8 when the rules of the module docstring allow it."""
        if any(self.t(o).variable or self.t(o).dtype != np.float32 for o in op.outputs):
            return False
        if op.code in MOVES:
            return self._move(op)
        if op.code in WEIGHTED:
            return self._weighted(op)
        if op.code in COMPUTE:
            return self._compute(op)
        return False

    def _move(self, op: Op) -> bool:
        d = MOVES[op.code]
        x = op.inputs[d]
        if x not in self.qview or self._runtime_float(op, [d]):
            return False
        src = self.qview[x]
        q = self.t(src).quant
        assert q is not None
        consts = [s for s, i in enumerate(op.inputs) if i >= 0 and s != d
                  and self.t(i).data is not None and self.t(i).dtype == np.float32]
        if consts and not (op.code == "PADV2" and consts == [2]):
            return False
        if consts:
            value = self._pad_value(op, q)
            if value is None:
                return False
            op.inputs[2] = value
        op.inputs[d] = src
        after = self._bind_outputs(op, [q] * len(op.outputs))
        self.ops.append(op)
        self.ops.extend(after)
        return True

    def _pad_value(self, op: Op, q: QuantParams) -> int | None:
        """PADV2's float pad value as int8 with the data's parameters: exact when it lies on
        the grid, or below it when only max-reductions read the result (a max pool's -inf)."""
        data = self.t(op.inputs[2]).data
        assert data is not None
        value = float(np.asarray(data).reshape(-1)[0])
        scale, zero = q.scale[0], q.zero_point[0]
        level = np.clip(np.round(value / scale) + zero, -128, 127) if np.isfinite(value) \
            else (-128 if value < 0 else 127)
        exact = np.isfinite(value) and (level - zero) * scale == value
        readers = [self.g.ops[k].code for k in self.consumers.get(op.outputs[0], [])]
        lowest = value <= (-128 - zero) * scale and readers and all(
            r in ("MAX_POOL_2D", "REDUCE_MAX") for r in readers)
        if not (exact or lowest):
            return None
        idx = self.g.add_tensor(f"{self.t(op.inputs[2]).name}/int8", np.int8, [1],
                                np.asarray([level], np.int8))
        self.t(idx).quant = QuantParams([scale], [zero])
        return idx

    def _compute(self, op: Op) -> bool:
        params = [self._out_params(o) for o in op.outputs]
        if len(op.outputs) != 1 or params[0] is None:
            return False
        out_q = params[0]
        if op.code in FIXED and not (out_q.zero_point[0] == FIXED[op.code][1] and np.isclose(
                out_q.scale[0], FIXED[op.code][0], rtol=1e-6)):
            return False  # the kernel's output parameters are fixed
        inputs = list(op.inputs)
        for slot, i in enumerate(inputs):
            if i < 0 or self.t(i).dtype != np.float32:
                continue
            q = self.qview.get(i) if self.t(i).data is None else self._const_int8(i)
            if q is None:
                return False
            inputs[slot] = q
        if op.code in UNIFORM:
            inputs = [self._requantized(i, out_q) if self.q8(i) else i for i in inputs]
        op.inputs = inputs
        if op.code in SAME_PARAMS:
            in_q = self.t(inputs[0]).quant
            assert in_q is not None
            if in_q != out_q:
                o = op.outputs[0]
                mid = self._new_int8(o, in_q, "int8_in_params")
                op.outputs[0] = mid
                self.ops.append(op)
                op = Op("QUANTIZE", [mid], [o])
        after = self._bind_outputs(op, [out_q])
        self.ops.append(op)
        self.ops.extend(after)
        return True

    def _requantized(self, i: int, q: QuantParams) -> int:
        if self.t(i).quant == q:
            return i
        out = self._new_int8(i, q, "requantized")
        self.ops.append(Op("QUANTIZE", [i], [out]))
        return out

    def _const_int8(self, i: int) -> int | None:
        """A float constant the source stored quantized per tensor, as that int8 tensor."""
        t = self.t(i)
        hint = self.hints.get(t.name)
        if hint is None or hint.scale.size != 1 or t.data is None:
            return None
        zero = _zero_as_int8(hint)
        if zero is None:
            return None
        q = np.round(t.data.astype(np.float64) / float(hint.scale[0])) + zero[0]
        if np.any(q < -128) or np.any(q > 127):
            return None
        back = ((q - zero[0]) * float(hint.scale[0])).astype(np.float32)
        if not np.allclose(back, t.data, rtol=_GRID_RTOL, atol=float(hint.scale[0]) * 1e-3):
            return None
        idx = self.g.add_tensor(f"{t.name}/int8", np.int8, t.shape, q.astype(np.int8))
        self.t(idx).quant = QuantParams([float(hint.scale[0])], [int(zero[0])])
        return idx

    def weight_hint(self, op: Op) -> WeightQuant | None:
        """The source quantization of ``op``'s weight (via the IR node it was lowered from)."""
        node = self.origin.get(id(op))
        if node is None or len(node.inputs) < 2 or node.inputs[1] is None:
            return None
        return self.hints.get(node.inputs[1].name or "")

    def _weighted(self, op: Op) -> bool:
        data, w_slot, b_slot, axis = WEIGHTED[op.code]
        x = op.inputs[data]
        out_q = self._out_params(op.outputs[0])
        hint = self.weight_hint(op)
        w = self.t(op.inputs[w_slot])
        if x not in self.qview or out_q is None or hint is None or w.data is None or \
                self._runtime_float(op, [data]):
            return False
        zero = _zero_as_int8(hint)
        if zero is None or np.any(zero != 0):
            return False  # LiteRT's int8 filters are symmetric
        key = (op.inputs[w_slot], hint.scale.tobytes())
        if key not in self.weights:
            q = on_grid(w.data, hint.scale, axis)
            if q is None:
                return False
            wq = self.g.add_tensor(f"{w.name}/int8", np.int8, list(w.shape), q)
            per_channel = hint.scale.size > 1
            self.t(wq).quant = QuantParams([float(s) for s in hint.scale],
                                           [0] * hint.scale.size, axis if per_channel else 0)
            self.weights[key] = (wq, hint.scale.astype(np.float64))
        wq, w_scale = self.weights[key]
        src = self.qview[x]
        x_q = self.t(src).quant
        assert x_q is not None
        inputs = list(op.inputs)
        inputs[data], inputs[w_slot] = src, wq
        if b_slot < len(inputs) and inputs[b_slot] >= 0:
            bias = self._bias(inputs[b_slot], x_q.scale[0] * w_scale, w.shape[axis])
            if bias is None:
                return False
            inputs[b_slot] = bias
        op.inputs = inputs
        after = self._bind_outputs(op, [out_q])
        self.ops.append(op)
        self.ops.extend(after)
        return True

    def _bias(self, idx: int, scale: np.ndarray, channels: int) -> int | None:
        """int32 bias with scale = input scale x weight scale (per channel)."""
        b = self.t(idx)
        if b.data is None or b.dtype != np.float32:
            return None
        s = np.broadcast_to(scale, (channels,)).astype(np.float64)
        bq = np.round(b.data.astype(np.float64) / s)
        if np.any(np.abs(bq) >= 2**31):
            return None
        out = self.g.add_tensor(f"{b.name}/int32", np.int32, list(b.shape), bq.astype(np.int32))
        self.t(out).quant = QuantParams([float(v) for v in s], [0] * channels, 0)
        return out

    def _note_float(self, op: Op) -> None:
        """Remember an op that reads DEQUANTIZE'd tensors or feeds a QUANTIZE but stays float."""
        reads = any(i in self.qview for i in op.inputs)
        feeds = any(self.g.ops[c].code == "QUANTIZE" for o in op.outputs
                    for c in self.consumers.get(o, []))
        if reads or feeds:
            node = self.origin.get(id(op))
            where = getattr(node, "name", None) or (self.t(op.outputs[0]).name
                                                     if op.outputs else "?")
            self.float_ops.append(f"{op.code} ({where})")

    def _store_float_weights(self) -> None:
        """Weights of ops left in float that the source stored as integers: int8 + DEQUANTIZE
        (exact), so the file keeps them small as the source did."""
        prefix: list[Op] = []
        done: dict[int, int] = {}
        for op in self.g.ops:
            if op.code not in WEIGHTED:
                continue
            _, w_slot, _, axis = WEIGHTED[op.code]
            i = op.inputs[w_slot]
            w = self.t(i)
            if w.data is None or w.dtype != np.float32:
                continue
            if i in done:
                op.inputs[w_slot] = done[i]
                continue
            hint = self.weight_hint(op)
            zero = None if hint is None else _zero_as_int8(hint)
            q = None if hint is None or zero is None else \
                on_grid(w.data, hint.scale, axis, zero)
            if q is None or hint is None or zero is None:
                continue
            stored = self.g.add_tensor(f"{w.name}/int8", np.int8, list(w.shape), q)
            zeros = np.broadcast_to(zero.reshape(-1), (hint.scale.size,))
            self.t(stored).quant = QuantParams([float(s) for s in hint.scale],
                                               [int(z) for z in zeros],
                                               axis if hint.scale.size > 1 else 0)
            if hint.dynamic and op.code in HYBRID and not np.any(zero != 0):
                # LiteRT's hybrid kernel: int8 weights, activations quantized at run time
                # (asymmetrically, like DynamicQuantizeLinear's uint8 with a zero point)
                if hasattr(op.options, "asymmetricQuantizeInputs"):
                    op.options.asymmetricQuantizeInputs = True
                done[i] = stored
                op.inputs[w_slot] = stored
                continue
            f = self.g.add_tensor(f"{w.name}/dequantized", np.float32, list(w.shape))
            prefix.append(Op("DEQUANTIZE", [stored], [f]))
            done[i] = f
            op.inputs[w_slot] = f
        self.g.ops = prefix + self.g.ops


def _zero_as_int8(hint: WeightQuant) -> np.ndarray | None:
    """The hint's zero points in int8 terms (uint8 shifted by 128; other types None)."""
    if hint.dtype == "int8":
        return hint.zero_point
    if hint.dtype == "uint8":
        return hint.zero_point - 128
    return None


def _drop_dead(graph: TflGraph) -> None:
    """Remove (DE)QUANTIZE ops whose outputs nobody reads (repeated to a fixed point)."""
    while True:
        used = set(graph.outputs)
        for op in graph.ops:
            used.update(i for i in op.inputs if i >= 0)
        keep = [op for op in graph.ops if op.code not in ("QUANTIZE", "DEQUANTIZE")
                or any(o in used for o in op.outputs)]
        if len(keep) == len(graph.ops):
            return
        graph.ops = keep


def to_int8(graph: TflGraph, origins: Sequence[Any], hints: dict[str, WeightQuant]) -> list[str]:
    """Run the QDQ rewrite on ``graph`` in place.

    Args:
        graph: the lowered float graph with QUANTIZE / DEQUANTIZE ops.
        origins: per op of ``graph``, the IR node it was lowered from (or None).
        hints: the folded weights' source quantization, by IR value name.

    Returns:
        The ops that read or feed quantized tensors but stay float (for the warning).
    """
    return QdqRewriter(graph, origins, hints).run()
