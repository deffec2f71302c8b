"""Regressions found by the benchmarks and the verifier's localisation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import modelconv
from modelconv.testing import assert_equivalent

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="needs ai-edge-litert")


def test_tanh_after_mul_is_not_fused_away(tmp_path: Path) -> None:
    """TFLite kernels ignore a fused TANH: Mul+Tanh must stay two ops."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["t"]), helper.make_node("Tanh", ["t"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(np.array(3.0, np.float32), "k")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    modelconv.convert(src, tmp_path / "m.tflite", verify=False)
    report = assert_equivalent(src, tmp_path / "m.tflite")
    assert report.outputs[0].max_abs < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")
def test_gpt2_tanh_gelu_to_tflite(tmp_path: Path) -> None:
    import torch
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100,
                                  n_positions=32, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    lm = transformers.GPT2LMHeadModel(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids=ids, use_cache=False).logits

    model = Logits().eval()
    ids = torch.randint(0, 100, (1, 8))
    result = modelconv.convert(model, tmp_path / "g.tflite", example_inputs=(ids,))
    assert result.verified
    assert result.report is not None and result.report.outputs[0].max_rel < 1e-4
