"""A transformers BERT built from a small config -> ONNX with dynamic batch and sequence.

    python examples/transformers_dynamic_onnx.py --out /tmp/mc-example

The ONNX file is then run by onnxruntime at other batch sizes and sequence lengths than the
ones it was traced with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import BertConfig, BertModel

import modelconv


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=128)
    model = BertModel(config).eval()
    ids = torch.randint(0, 1000, (2, 16))
    dims = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    result = modelconv.convert(
        model, args.out / "bert.onnx", overwrite=True,
        example_inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
        dynamic_dims=dims)
    print(result.report.summary())
    for warning in result.warnings:
        print("warning:", warning)

    session = ort.InferenceSession(str(args.out / "bert.onnx"))
    print("inputs:", [(i.name, i.shape) for i in session.get_inputs()])
    print("outputs:", [(o.name, o.shape) for o in session.get_outputs()])
    for batch, seq in [(1, 5), (4, 33), (3, 128)]:
        ids = np.random.default_rng(seq).integers(0, 1000, (batch, seq))
        mask = np.ones_like(ids)
        hidden, pooled = session.run(None, {"input_ids": ids, "attention_mask": mask})
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        err = max(float(np.abs(hidden - ref.last_hidden_state.numpy()).max()),
                  float(np.abs(pooled - ref.pooler_output.numpy()).max()))
        print(f"batch {batch}, seq {seq}: last_hidden_state {hidden.shape}, max abs err {err:.2e}")
        assert err < 1e-4


if __name__ == "__main__":
    main()
