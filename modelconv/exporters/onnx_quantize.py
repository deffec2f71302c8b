"""Reduced-precision ONNX output: fp16 weights, dynamic int8, static int8 (QDQ).

- ``fp16``: float32 constants of at least :data:`MIN_FP16_ELEMENTS` elements are stored as
  float16, each read through one ``Cast(to=FLOAT)``; the compute graph, its inputs and
  outputs stay float32, so every op runs on onnxruntime's CPU kernels as before, and
  small constants (scales, shapes, epsilons) and the inputs listed in :data:`KEEP_FP32`
  keep full precision::

      W (f32) ──► Conv            W (f16) ──► Cast(to=FLOAT) ──► Conv

- ``quantize="dynamic"``: onnxruntime's ``quantize_dynamic`` (int8 weights per tensor;
  Conv/MatMul/Gemm become ConvInteger/MatMulInteger fed by DynamicQuantizeLinear).
- ``quantize="int8"``: onnxruntime's ``quantize_static`` in QDQ format: int8 weights (per
  channel from opset 13), int8 activations whose ranges (MinMax) come from the calibration
  samples, read by the same reader as for TFLite (``options.calibration``; seeded random
  samples and a warning without it). Float inputs and outputs are kept.

:func:`precision_of` tells which of these an .onnx file is, for the verifier's tolerance.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.options import ConvertOptions

#: smaller float constants stay float32 (scales, epsilons, shape-like values)
MIN_FP16_ELEMENTS = 16
#: (op_type, input index) read as exact numbers: never stored as float16
KEEP_FP32 = {("Resize", 1), ("Resize", 2), ("Upsample", 1), ("Range", 0), ("Range", 1),
             ("Range", 2), ("ConstantOfShape", 0)}
#: ops only a dynamically / statically quantized graph has
DYNAMIC_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
               "DynamicQuantizeLSTM"}
STATIC_OPS = {"QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul"}


def fp16_weights(model: ir.Model) -> ir.Model:
    """A copy of ``model`` whose large float32 constants are stored as float16.

    Args:
        model: The float model (not modified).

    Returns:
        The new model; compute, inputs and outputs stay float32.
    """
    model = model.clone()
    graph = model.graph
    casts: list[ir.Node] = []
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or value.is_graph_input() or value.is_graph_output() \
                or not _wants_fp16(value, tensor.dtype, tensor.size):
            continue
        dims = list(tensor.shape.numpy())
        half = ir.Value(name=f"{value.name}__fp16", shape=ir.Shape(dims),
                        type=ir.TensorType(ir.DataType.FLOAT16),
                        const_value=_half(tensor, f"{value.name}__fp16"))
        cast = ir.node("Cast", [half], {"to": ir.DataType.FLOAT}, name=f"{value.name}__cast")
        value.replace_all_uses_with(cast.outputs[0])
        name = value.name
        graph.initializers.pop(name or "")
        cast.outputs[0].name = name
        cast.outputs[0].shape = ir.Shape(dims)
        cast.outputs[0].dtype = ir.DataType.FLOAT
        graph.register_initializer(half)
        casts.append(cast)
    if casts:
        graph.insert_before(graph.node(0), casts)
    else:
        warnings.warn(f"fp16: the model has no float32 weight of {MIN_FP16_ELEMENTS}+ elements; "
                      "it is written in float32", UserWarning, stacklevel=3)
    return model


#: weights above this many elements are converted to float16 as they are written
LAZY_FP16_FROM = 1 << 16


def _half(tensor: ir.TensorProtocol, name: str) -> ir.TensorProtocol:
    """``tensor`` as float16; a large one lazily (converted when written, not kept)."""
    if tensor.size <= LAZY_FP16_FROM:
        return ir.tensor(tensor.numpy().astype(np.float16), name=name)
    return ir.LazyTensor(lambda: ir.tensor(tensor.numpy().astype(np.float16)),
                         dtype=ir.DataType.FLOAT16, shape=ir.Shape(list(tensor.shape.numpy())),
                         name=name)


def _wants_fp16(value: ir.Value, dtype: ir.DataType, size: int) -> bool:
    if dtype != ir.DataType.FLOAT or size < MIN_FP16_ELEMENTS:
        return False
    return all((user.op_type, index) not in KEEP_FP32 for user, index in value.uses())


def write_quantized(model: ir.Model, out: Path, options: ConvertOptions, *,
                    external: bool) -> None:
    """Quantize ``model`` per ``options.quantize`` with onnxruntime and write it to ``out``.

    Args:
        model: The float model.
        out: Where to write (its folder is the exporter's private temp folder).
        options: ``quantize`` ("dynamic" or "int8"), ``calibration``, ``seed``,
            ``dim_values`` and ``batch_size`` (shapes of generated calibration samples).
        external: Store the weights in ``<out>.data``.

    Raises:
        ExportError: onnxruntime's quantizer is missing or fails, or bad calibration data.
    """
    try:
        from onnxruntime import quantization as q
    except ImportError as exc:  # onnxruntime is core, but its quantization tools need onnx
        raise ExportError(f"onnxruntime's quantization tools are unavailable: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="float-", dir=out.parent) as work, _quiet():
        source = Path(work) / "float.onnx"
        ir.save(ir.external_data.load_to_model(model), source,
                external_data="float.onnx.data" if external else None)
        try:
            if options.quantize == "dynamic":
                q.quantize_dynamic(source, out, weight_type=q.QuantType.QInt8,
                                   use_external_data_format=external)
                if precision_of(out) != "dynamic":
                    warnings.warn("quantize='dynamic': the model has no op onnxruntime "
                                  "quantizes dynamically (Conv, MatMul, Gemm, LSTM, ...); "
                                  "it is written in float32", UserWarning, stacklevel=3)
            else:
                reader = _SampleReader(*_calibration_samples(model, options))
                opset = model.opset_imports.get("", 0)
                q.quantize_static(
                    source, out, reader, quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                    per_channel=opset >= 13, calibrate_method=q.CalibrationMethod.MinMax,
                    use_external_data_format=external)
        except ExportError:
            raise
        except Exception as exc:  # onnxruntime raises its own and builtin types
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ExportError(
                f"onnxruntime could not quantize the model ({options.quantize}): "
                f"{type(exc).__name__}: {first}",
                hint="Try --fp16, or a TFLite target for this quantization") from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer logs advice at WARNING level on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _calibration_samples(model: ir.Model, options: ConvertOptions
                         ) -> tuple[list[str], list[list[np.ndarray]]]:
    """Input names and calibration feeds, read by the TFLite exporter's sample reader."""
    from modelconv.calibration import read_samples
    from modelconv.ir.info import graph_input_specs
    from modelconv.verification.inputs import resolve_shape

    specs = graph_input_specs(model.graph)
    shapes = [[int(d) for d in resolve_shape(s, options.dim_values, options.batch_size or 1)]
              for s in specs]
    dtypes = [np.dtype(s.dtype) for s in specs]
    names = [s.name for s in specs]
    return names, read_samples(names, shapes, dtypes, options.calibration, seed=options.seed)


class _SampleReader:
    """The CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, names: list[str], samples: Sequence[Sequence[np.ndarray]]):
        self._names = names
        self._samples = list(samples)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next sample as {input name: array}, None at the end."""
        if self._next >= len(self._samples):
            return None
        sample = self._samples[self._next]
        self._next += 1
        return dict(zip(self._names, sample, strict=True))

    def rewind(self) -> None:
        """Start over (onnxruntime may read the samples more than once)."""
        self._next = 0


def precision_of(path: str | Path) -> str:
    """The precision an .onnx file computes in: the verifier's tolerance mode.

    Args:
        path: An .onnx file (external data is not read).

    Returns:
        "int8" (static QDQ / QLinear ops), "dynamic" (DynamicQuantizeLinear and integer
        Conv/MatMul), "float16" (float16 inputs or weights) or "float32".
    """
    proto = onnx.load(str(path), load_external_data=False)
    ops: set[str] = set()
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            ops.add(node.op_type)
            graphs += [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
            graphs += [g for a in node.attribute for g in a.graphs]
    if ops & STATIC_OPS:
        return "int8"
    if ops & DYNAMIC_OPS:
        return "dynamic"
    half = onnx.TensorProto.FLOAT16
    if any(t.data_type == half for t in proto.graph.initializer) or any(
            i.type.tensor_type.elem_type == half for i in proto.graph.input):
        return "float16"
    return "float32"
