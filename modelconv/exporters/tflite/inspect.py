"""``modelconv inspect`` for .tflite files: signature, op counts and parameter sizes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from modelconv.errors import MissingDependencyError, ModelLoadError
from modelconv.ir.info import ModelInfo, TensorSpec

_NUMPY = {"FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32", "INT64": "int64",
          "INT8": "int8", "UINT8": "uint8", "INT16": "int16", "BOOL": "bool"}


def inspect_tflite(path: str | Path) -> ModelInfo:
    """Describe the .tflite file at ``path`` (read with the schema; nothing is executed).

    Args:
        path: The .tflite file.

    Returns:
        Its ModelInfo, with every tensor and its quantization in ``tensors``.

    Raises:
        ModelLoadError: not a TFLite flatbuffer, or a corrupt one.
        MissingDependencyError: ai-edge-litert (the schema) is not installed.
    """
    try:
        from ai_edge_litert import schema_py_generated as s
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert", "tflite", "Inspecting .tflite") from exc
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelLoadError("not a TFLite flatbuffer (no TFL3 identifier)", path=str(path))
    try:
        model = s.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # flatbuffers raises assorted errors on corrupt input
        raise ModelLoadError(f"corrupt TFLite flatbuffer: {exc}", path=str(path)) from exc
    sub = model.subgraphs[0]
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}

    def spec(name: str, idx: int) -> TensorSpec:
        """TensorSpec of tensor ``idx`` (shape_signature -1 -> None)."""
        t = sub.tensors[idx]
        sig = t.shapeSignature if t.shapeSignature is not None else t.shape
        dims = tuple(None if int(d) < 0 else int(d) for d in (sig if sig is not None else []))
        kind = type_names.get(t.type, str(t.type))
        return TensorSpec(name, _NUMPY.get(kind, kind.lower()), dims)

    sig = model.signatureDefs[0] if model.signatureDefs else None
    if sig is not None:
        inputs = [spec(m.name.decode() if isinstance(m.name, bytes) else m.name, m.tensorIndex)
                  for m in sig.inputs]
        outputs = [spec(m.name.decode() if isinstance(m.name, bytes) else m.name, m.tensorIndex)
                   for m in sig.outputs]
    else:
        inputs = [spec(_name(sub.tensors[i].name), i) for i in sub.inputs]
        outputs = [spec(_name(sub.tensors[i].name), i) for i in sub.outputs]
    ops = Counter(op_names.get(model.operatorCodes[op.opcodeIndex].builtinCode, "CUSTOM")
                  for op in sub.operators)
    count = nbytes = 0
    tensors = []
    for t in sub.tensors:
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        size = 0 if buf is None else (len(buf.data) if buf.data is not None else int(buf.size))
        if size:
            count += int(np.prod(t.shape)) if t.shape is not None else 0
            nbytes += size
        kind = type_names.get(t.type, str(t.type))
        entry: dict[str, Any] = {
            "name": _name(t.name), "dtype": _NUMPY.get(kind, kind.lower()),
            "shape": [int(d) for d in (t.shape if t.shape is not None else [])],
            "bytes": size, "quantization": _quantization(t.quantization)}
        tensors.append(entry)
    return ModelInfo(path=str(path), format="tflite", inputs=inputs, outputs=outputs,
                     op_counts=dict(sorted(ops.items())), num_parameters=count,
                     parameter_bytes=nbytes, opset=None,
                     producer=_name(model.description) or None, tensors=tensors)


def _quantization(q: Any) -> dict[str, Any] | None:
    """Per-tensor quantization: scale / zero-point counts, first values, quantized axis."""
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zeros = q.zeroPoint if q.zeroPoint is not None else []
    return {"scale_count": len(q.scale), "zero_point_count": len(zeros),
            "scale": float(q.scale[0]), "zero_point": int(zeros[0]) if len(zeros) else 0,
            "quantized_dimension": int(q.quantizedDimension or 0)}


def _name(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")
