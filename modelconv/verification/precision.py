"""The numeric precision of a converted model file, read from the file itself.

``modelconv verify SRC X.tflite`` must judge a file with the tolerance its precision
deserves, exactly as ``convert`` does for the file it has just written. The file says what
it is: a TFLite tensor's type and quantization parameters, an ONNX initializer's data type
and its quantization ops. Nothing is executed; only the flatbuffer / protobuf is read.

Precisions, from the tightest to the loosest tolerance: ``float32`` < ``float16`` <
``bfloat16`` < ``dynamic`` (int8 weights, float activations) < ``int8`` (int8
activations with calibrated scales; int8 I/O included).
"""

from __future__ import annotations

from pathlib import Path

#: tolerance modes ordered from the tightest to the loosest
PRECISION_ORDER = ("exact", "float64", "float32", "float16", "bfloat16", "dynamic", "int8")

_ONNX_STATIC_QUANT = {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
                      "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
                      "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax"}
_ONNX_DYNAMIC_QUANT = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                       "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "DynamicQuantizeLSTM"}


def loosest(*modes: str | None) -> str:
    """The loosest of ``modes`` (``None`` entries are ignored; default ``float32``)."""
    known = [m for m in modes if m in PRECISION_ORDER]
    return max(known, key=PRECISION_ORDER.index) if known else "float32"


def file_precision(path: str | Path, fmt: str) -> str | None:
    """The precision of the model file at ``path`` of format ``fmt`` (``None`` if unknown).

    Args:
        path: a ``.tflite`` or ``.onnx`` file.
        fmt: its format name (``"tflite"`` or ``"onnx"``; others give ``None``).

    Returns:
        One of :data:`PRECISION_ORDER`'s float/quantized modes, or ``None`` when the file
        cannot be read here (the caller then keeps the options' precision).
    """
    try:
        if fmt == "tflite":
            from modelconv.fileio import read_or_map

            return tflite_precision(read_or_map(Path(path)))  # type: ignore[arg-type]
        if fmt == "onnx":
            return onnx_precision(path)
    except Exception:  # flatbuffers and protobuf raise assorted errors on bad files
        return None  # the runner, which loads the file first, reports a corrupt file
    return None


def tflite_precision(content: bytes) -> str:
    """Precision of a TFLite flatbuffer (see the module docstring for the names).

    Args:
        content: the file's bytes.

    Returns:
        ``int8`` when a run-time tensor is int8/uint8/int16 with a scale (full integer,
        int8 I/O); else ``dynamic`` when a constant is int8 (hybrid kernels, int8 +
        DEQUANTIZE); else ``float16`` when a constant is float16; else ``float32``.
    """
    from ai_edge_litert import schema_py_generated as s

    model = s.Model.GetRootAs(content, 0)
    quantized = (s.TensorType.INT8, s.TensorType.UINT8, s.TensorType.INT16)
    found: set[str] = set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for i in range(sub.TensorsLength()):
            t = sub.Tensors(i)
            buf = model.Buffers(t.Buffer()) if 0 < t.Buffer() < model.BuffersLength() else None
            const = buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)
            q = t.Quantization()
            scaled = q is not None and q.ScaleLength() > 0
            if t.Type() in quantized and scaled:
                found.add("dynamic" if const else "int8")
            elif t.Type() == s.TensorType.FLOAT16 and const:
                found.add("float16")
    return loosest(*found)


def onnx_precision(path: str | Path) -> str:
    """Precision of an ONNX file, read without its weights' bytes (embedded or external).

    Args:
        path: the ``.onnx`` file.

    Returns:
        ``int8`` for QDQ or QLinear* models (QuantizeLinear on activations); ``dynamic``
        for DynamicQuantizeLinear / MatMulInteger models and weight-only
        DequantizeLinear; ``float16`` / ``bfloat16`` when weights, inputs or casts use
        that type; else ``float32``.
    """
    import onnx

    from modelconv.verification.onnx_skim import skim_graph

    graph = skim_graph(path)  # the weights' bytes are skipped, not read
    found: set[str] = set()
    half: dict[int, str] = {onnx.TensorProto.FLOAT16: "float16",
                            onnx.TensorProto.BFLOAT16: "bfloat16"}
    for data_type in graph.initializer_types:
        if data_type in half:
            found.add(half[data_type])
    for v in graph.inputs:
        if v.type.tensor_type.elem_type in half:
            found.add(half[v.type.tensor_type.elem_type])
    produced_by_const = set(graph.initializer_names)
    for node in graph.nodes:
        if node.op_type == "Constant":
            produced_by_const.update(node.output)
    for node in graph.nodes:
        if node.op_type in _ONNX_STATIC_QUANT:
            found.add("int8")
        elif node.op_type in _ONNX_DYNAMIC_QUANT:
            found.add("dynamic")
        elif node.op_type == "QuantizeLinear":
            found.add("dynamic" if node.input and node.input[0] in produced_by_const
                      else "int8")
        elif node.op_type == "DequantizeLinear" and node.input and \
                node.input[0] in produced_by_const:
            found.add("dynamic")
        elif node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to in half:
                found.add(half[to])
    return loosest(*found)
