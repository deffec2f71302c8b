"""The ONNX-op -> TFLite lowering registry: ``@tflite_lowering("Conv")``."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from modelconv.exporters.tflite.graph import LoweringContext
from modelconv.registry import Registry

Lowering = Callable[[LoweringContext, ir.Node], None]

LOWERINGS: Registry[Lowering] = Registry("tflite lowering")
tflite_lowering = LOWERINGS.register
