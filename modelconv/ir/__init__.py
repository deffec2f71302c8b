"""Thin helpers over onnx_ir. Imports no ML framework."""

from modelconv.ir.builder import DEFAULT_OPSET, GraphBuilder, source_name_of
from modelconv.ir.info import TensorSpec, graph_input_specs, graph_output_specs

__all__ = [
    "DEFAULT_OPSET",
    "GraphBuilder",
    "TensorSpec",
    "graph_input_specs",
    "graph_output_specs",
    "source_name_of",
]
