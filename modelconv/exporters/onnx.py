"""ONNX exporter: opset conversion, external data, atomic and deterministic writes."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir

from modelconv.errors import ExportError
from modelconv.fileio import atomic_output_dir
from modelconv.options import ConvertOptions

#: a protobuf cannot exceed 2 GiB; leave room for the graph itself
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 128 * 1024**2


def export_onnx(model: ir.Model, dst: Path, options: ConvertOptions) -> list[Path]:
    """Write ``model`` to ``dst`` (plus ``<dst>.data`` when weights go external)."""
    dst = Path(dst)
    current = model.opset_imports.get("", None)
    if options.opset is not None and options.opset != current:
        model = convert_opset(model, options.opset)
    use_external = options.external_data
    if use_external is None:
        use_external = initializer_bytes(model) >= EXTERNAL_DATA_THRESHOLD
    data_name = f"{dst.name}.data" if use_external else None
    if not use_external:
        # weights read lazily from the source's data file get embedded, not referenced
        model = ir.external_data.load_to_model(model)
    with atomic_output_dir(dst) as tmp:
        try:
            ir.save(model, tmp / dst.name, external_data=data_name, size_threshold_bytes=1024)
        except Exception as exc:
            raise ExportError(f"writing ONNX failed: {exc}", path=str(dst)) from exc
    written = [dst]
    if data_name:
        written.append(dst.parent / data_name)
    return written


def initializer_bytes(model: ir.Model) -> int:
    """Total size of the main graph's initializers in bytes."""
    total = 0
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            total += value.const_value.nbytes
    return total


def convert_opset(model: ir.Model, target: int) -> ir.Model:
    """The same model re-expressed in ONNX opset ``target`` (onnx's version converter)."""
    if initializer_bytes(model) >= EXTERNAL_DATA_THRESHOLD:
        raise ExportError(
            "opset conversion of models above 2 GiB is not supported",
            hint="Keep the model's opset (omit --opset)",
        )
    if not 7 <= target <= onnx.defs.onnx_opset_version():
        raise ExportError(
            f"opset {target} is out of range",
            hint=f"Use an opset between 7 and {onnx.defs.onnx_opset_version()}",
        )
    proto = ir.to_proto(ir.external_data.load_to_model(model))
    try:
        converted = onnx.version_converter.convert_version(proto, target)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot convert the model to opset {target}: {first}",
            hint="Try a nearer opset, or keep the source opset",
        ) from exc
    return ir.from_proto(converted)
