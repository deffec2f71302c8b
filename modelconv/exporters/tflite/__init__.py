"""TFLite exporter: IR -> passes -> lowerings -> (quantization) -> flatbuffer.

``export_tflite(model, dst, options)`` is the entry point named in modelconv.formats.
The flatbuffer is written with ``ai_edge_litert``'s schema object API (extra ``tflite``).
Importing the package registers every ``ops_*`` lowering (so it needs that extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelconv.errors import MissingDependencyError
from modelconv.exporters.tflite import (  # noqa: F401  (imported for their registrations)
    ops_bitwise,
    ops_control,
    ops_conv,
    ops_conv_transpose,
    ops_cumulative,
    ops_dft,
    ops_einsum,
    ops_elementwise,
    ops_fc,
    ops_generate,
    ops_index,
    ops_math,
    ops_misc,
    ops_norm,
    ops_pool,
    ops_quant,
    ops_resize,
    ops_rnn,
    ops_sample,
    ops_select,
    ops_shape,
    ops_special,
    ops_static,
    ops_trig,
)
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


__all__ = ["LOWERINGS", "convert_to_tflite", "export_tflite", "tflite_lowering"]
