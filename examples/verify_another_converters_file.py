"""Verify a file that another converter wrote: torch.onnx.export vs the torch module.

    python examples/verify_another_converters_file.py --out /tmp/mc-example

modelconv runs the source module and the ONNX file on the same seeded inputs, reports the
error per output and (``localize=True``) compares intermediate tensors layer by layer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import modelconv


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean((2, 3)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 3, 32, 32)
    path = args.out / "net_torch_onnx.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"])

    report = modelconv.verify(net, path, example_inputs=(x,), localize=True)
    print(report.to_table())
    report.to_json()
    (args.out / "report.json").write_text(report.to_json())
    assert report.passed


if __name__ == "__main__":
    main()
