"""Tiny ONNX source models built with onnx.helper (no framework needed)."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.zoo import ModelSpec


def build_onnx(spec: ModelSpec) -> onnx.ModelProto:
    """An MLP 64-128-10 with seeded weights (``onnx_mlp``)."""
    if spec.name != "onnx_mlp":
        raise KeyError(f"no onnx builder for {spec.name}")
    rng = np.random.default_rng(0)
    dims = [64, 128, 10]
    inits, nodes, prev = [], [], spec.inputs[0].name
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32) + 0.01, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info(spec.inputs[0].name, TensorProto.FLOAT,
                                       list(spec.inputs[0].shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="benchmarks")
    onnx.checker.check_model(model)
    return model
