"""Docs generated from code stay in sync with it."""

from __future__ import annotations

import os
import subprocess
import sys

from modelconv.support import support_matrix
from tests.paths import ROOT

DOC = ROOT / "docs" / "support.md"


def test_support_matrix_lists_every_registry() -> None:
    matrix = support_matrix()
    assert len(matrix) == 6
    for title, entry in matrix.items():
        assert entry["error"] is None, f"{title}: {entry['error']}"
        assert len(entry["supported"]) > (10 if "function body" in title else 20), title
    torch_ops = next(v for k, v in matrix.items() if "ATen" in k)["supported"]
    assert "aten.convolution.default" in torch_ops
    tf_ops = next(v for k, v in matrix.items() if "TensorFlow ops" in k)["supported"]
    assert {"Conv2D", "FusedBatchNormV3", "While", "TensorListStack"} <= set(tf_ops)
    lowered = set(next(v for k, v in matrix.items() if "lowered" in k)["supported"])
    bodies = set(next(v for k, v in matrix.items() if "function body" in k)["supported"])
    assert {"Attention", "SoftmaxCrossEntropyLoss", "RotaryEmbedding"} <= bodies
    assert not bodies & lowered  # an op is listed under one of the two, never both
    keras_layers = next(v for k, v in matrix.items() if "Keras" in k)["supported"]
    assert {"Conv2D", "LSTM", "MultiHeadAttention"} <= set(keras_layers)


def test_support_doc_is_generated_from_registries() -> None:
    # the documented command, in a fresh process: what other tests imported or set in this
    # one (a Keras backend, say) must not decide what the page says
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "modelconv.support"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300, check=True).stdout
    assert DOC.read_text() == out, (
        "docs/support.md is stale: run `python -m modelconv.support > docs/support.md`")
