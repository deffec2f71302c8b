"""modelconv: convert trained models between frameworks and prove each conversion correct.

Public API (imported lazily, so ``import modelconv`` loads no ML framework)::

    result = modelconv.convert("model.h5", "model.onnx")
    report = modelconv.verify("model.h5", "model.onnx")
    info = modelconv.inspect("model.onnx")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelconv._version import __version__

__all__ = [
    "ConversionResult",
    "ConvertOptions",
    "ModelInfo",
    "SourceModel",
    "VerificationReport",
    "__version__",
    "convert",
    "errors",
    "inspect",
    "load",
    "save",
    "verify",
]

if TYPE_CHECKING:
    from modelconv import errors
    from modelconv.api import ConversionResult, convert, inspect, load, save, verify
    from modelconv.formats import SourceModel
    from modelconv.ir.info import ModelInfo
    from modelconv.options import ConvertOptions
    from modelconv.verification.report import VerificationReport

_LAZY = {
    "convert": "modelconv.api",
    "verify": "modelconv.api",
    "inspect": "modelconv.api",
    "load": "modelconv.api",
    "save": "modelconv.api",
    "ConversionResult": "modelconv.api",
    "ModelInfo": "modelconv.ir.info",
    "ConvertOptions": "modelconv.options",
    "SourceModel": "modelconv.formats",
    "VerificationReport": "modelconv.verification.report",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "errors":
        return importlib.import_module("modelconv.errors")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'modelconv' has no attribute {name!r}")
