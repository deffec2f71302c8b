"""TFLite exporter: IR -> passes -> lowerings -> (quantization) -> flatbuffer.

``export_tflite(model, dst, options)`` is the entry point named in modelconv.formats.
The flatbuffer is written with ``ai_edge_litert``'s schema object API (extra ``tflite``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelconv.errors import MissingDependencyError
from modelconv.exporters.tflite.registry import LOWERINGS, tflite_lowering

if TYPE_CHECKING:
    import onnx_ir as ir

    from modelconv.options import ConvertOptions


def _require() -> None:
    for module, package in (("flatbuffers", "flatbuffers"),
                            ("ai_edge_litert.schema_py_generated", "ai-edge-litert")):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingDependencyError(package, "tflite", "Writing .tflite files") from exc


def export_tflite(model: ir.Model, dst: Path, options: ConvertOptions) -> list[Path]:
    """Write ``model`` as a .tflite file at ``dst`` (atomically); returns the written paths."""
    _require()
    from modelconv.exporters.tflite.export import export_tflite as run

    return run(model, dst, options)


def convert_to_tflite(model: ir.Model, options: ConvertOptions | None = None) -> bytes:
    """The .tflite bytes for ``model`` (float, fp16 or quantized per ``options``)."""
    _require()
    from modelconv.exporters.tflite.export import convert_to_tflite as run

    return run(model, options)


def _register_lowerings() -> None:
    """Import the ops_* modules (their decorators fill LOWERINGS); needs ai-edge-litert."""
    try:
        from modelconv.exporters.tflite.export import _load_lowerings
    except ImportError:  # without the extra the registry stays empty; export says why
        return
    try:
        _load_lowerings()
    except ImportError:
        return


_register_lowerings()

__all__ = ["LOWERINGS", "convert_to_tflite", "export_tflite", "tflite_lowering"]
