"""A torchvision classifier -> ONNX, and -> TFLite with full int8 quantization.

    python examples/torchvision_to_onnx_and_tflite.py --out /tmp/mc-example [--model resnet18]

The model is built with ``weights=None`` (nothing is downloaded); calibration samples for
int8 are written to an .npz first — use real images of your data set in practice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision

import modelconv


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=64, help="input height and width")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    net = getattr(torchvision.models, args.model)(weights=None).eval()
    x = torch.randn(1, 3, args.size, args.size)

    onnx_result = modelconv.convert(net, args.out / "model.onnx", example_inputs=(x,),
                                    overwrite=True)
    print(onnx_result.report.summary())

    # calibration: 16 samples with a leading sample axis, keyed by the input's name
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((16, 1, 3, args.size, args.size)).astype(np.float32)
    np.savez(args.out / "calibration.npz", x=samples)
    int8_result = modelconv.convert(net, args.out / "model_int8.tflite", example_inputs=(x,),
                                    quantize="int8", calibration=args.out / "calibration.npz",
                                    overwrite=True)
    print(int8_result.report.summary())
    assert onnx_result.verified and int8_result.verified


if __name__ == "__main__":
    main()
