"""What ``inspect`` reports beyond the IR: shapes by inference, the source's own producer,
and weights files listed tensor by tensor (no architecture needed, no code executed).

The JSON schema of :meth:`modelconv.ir.info.ModelInfo.to_dict` is documented in
``docs/inspect.md``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import onnx_ir as ir

from modelconv.errors import MissingDependencyError, ModelLoadError
from modelconv.ir.info import ModelInfo

#: safetensors dtype names -> numpy names (and bytes per element)
_ST_DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2),
              "BF16": ("bfloat16", 2), "I64": ("int64", 8), "I32": ("int32", 4),
              "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1), "BOOL": ("bool", 1),
              "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8),
              "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1)}
#: safetensors headers above this are refused (the format's own limit is 100 MB)
MAX_HEADER_BYTES = 100 * 2**20


def infer_output_shapes(model: ir.Model) -> None:
    """Fill in value shapes the importer left unknown (ONNX shape inference, in place).

    Args:
        model: The imported model; a failed inference leaves it unchanged.
    """
    graph = model.graph
    if all(v.shape is not None and len(v.shape) > 0 for v in graph.outputs):
        return
    from modelconv.passes.shape_inference import ShapeInferencePass

    ShapeInferencePass()(model)


def source_producer(path: Path, fmt: str) -> str | None:
    """The producer a source file names itself (e.g. ``Keras 3.10.0``), without running it.

    Args:
        path: The source file or folder.
        fmt: Its format name.

    Returns:
        A short producer text, or None when the file does not say.
    """
    if fmt in ("keras", "keras-h5"):
        from modelconv.importers.keras.reader import open_keras_file

        with open_keras_file(path) as kf:
            return f"Keras {kf.keras_version}" if kf.keras_version else "Keras"
    if fmt == "savedmodel":
        return _savedmodel_producer(path)
    if fmt in ("pt2", "torchscript", "state_dict", "safetensors", "torch-module"):
        return "PyTorch"
    return None


def _savedmodel_producer(path: Path) -> str:
    from modelconv import protowire as pw
    from modelconv.importers.tf.files.bundle import read_member
    from modelconv.importers.tf.files.saved_model import MAX_SAVED_MODEL_BYTES

    try:
        raw = read_member(path, "saved_model.pb", MAX_SAVED_MODEL_BYTES, str(path))
        meta = pw.get_messages(pw.parse(raw), 2)[0]
        info = pw.parse(pw.get_bytes(pw.parse(meta), 1))
        version = pw.get_str(info, 5)  # MetaInfoDef.tensorflow_version
    except (pw.ProtoError, IndexError):
        version = ""
    return f"TensorFlow {version}".strip()


def inspect_weights(path: Path, fmt: str) -> ModelInfo:
    """List the tensors of a ``.safetensors`` or state_dict ``.pt/.pth`` file.

    Args:
        path: The weights file.
        fmt: ``"safetensors"`` or ``"state_dict"``.

    Returns:
        A ModelInfo with ``tensors`` (name, dtype, shape, bytes) and no signature.

    Raises:
        ModelLoadError: the file is corrupt or not a tensor mapping.
        MissingDependencyError: torch is needed for a ``.pt/.pth`` file.
    """
    tensors = _safetensors_tensors(path) if fmt == "safetensors" else _state_dict_tensors(path)
    count = 0
    for t in tensors:
        n = 1
        for d in t["shape"]:
            n *= int(d)
        count += n
    return ModelInfo(path=str(path), format=fmt, inputs=[], outputs=[], op_counts={},
                     num_parameters=count, parameter_bytes=sum(t["bytes"] for t in tensors),
                     producer="PyTorch" if fmt == "state_dict" else None, tensors=tensors)


def _safetensors_tensors(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelLoadError("truncated safetensors file (no header length)", path=str(path))
        (size,) = struct.unpack("<Q", head)
        if size > MAX_HEADER_BYTES:
            raise ModelLoadError(f"safetensors header of {size} bytes is over the 100 MB "
                                 "limit", path=str(path))
        raw = fh.read(size)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"corrupt safetensors header ({exc})", path=str(path)) from exc
    if not isinstance(header, dict):
        raise ModelLoadError("safetensors header is not a JSON object", path=str(path))
    out = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES.get(entry["dtype"], (str(entry["dtype"]).lower(), 0))[0]
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"safetensors entry '{name}' is malformed ({exc})",
                                 path=str(path)) from exc
        out.append({"name": name, "dtype": dtype, "shape": shape, "bytes": end - start})
    return sorted(out, key=lambda t: t["name"])


def _state_dict_tensors(path: Path) -> list[dict[str, Any]]:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "torch", "Listing a .pt/.pth state_dict") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        try:  # legacy (non-zip) files cannot be memory-mapped
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot read the state_dict ({exc})".split("\n")[0],
                                 path=str(path)) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError(f"holds a {type(obj).__name__}, not a state_dict", path=str(path))
    out = []
    for name, value in obj.items():
        if isinstance(value, torch.Tensor):
            out.append({"name": str(name), "dtype": str(value.dtype).removeprefix("torch."),
                        "shape": list(value.shape),
                        "bytes": value.numel() * value.element_size()})
    return sorted(out, key=lambda t: t["name"])
